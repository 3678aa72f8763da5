import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import Synchronization

/// Zero-copy firmware bodies over plain HTTP: the kernel sends the image file to the socket
/// (`sendfile`, as nginx does), instead of reading it into buffers in user space.
///
/// Hummingbird 2's response writer takes ByteBuffers only. So the download route answers
/// with the head alone (Content-Length set, empty body) carrying a marker header whose
/// value is a one-time key into this registry, and ``SendfileHandler`` (one per connection,
/// between Hummingbird and NIO's HTTP/1 encoder) replaces the marker by the file: it writes
/// the head without the marker, then the byte range as NIO FileRegions, then lets the
/// (empty) end of the response follow. The key never leaves the process and is taken once;
/// the file path is never in a header. Only without TLS: NIOSSL encrypts ByteBuffers only,
/// so over HTTPS the route streams the file itself.
final class SendfileRegistry: Sendable {
    /// The marker's name; no client can make a response carry it.
    static let marker = HTTPField.Name("x-updraft-sendfile")!
    /// A key not taken within this time is dropped (the connection closed before the head went out).
    static let lifetime: Duration = .seconds(60)

    struct Body: Sendable {
        var path: String
        var range: ClosedRange<Int>
        /// Called as pieces of ``SendfileHandler/pieceBytes`` (the last one shorter) reach the socket.
        var served: @Sendable (Int) -> Void
        var registered = ContinuousClock.now
    }

    private let bodies = Mutex<[String: Body]>([:])

    /// A key for `body`, to send as the value of ``marker``.
    func register(_ body: Body) -> String {
        let key = UInt64.random(in: 1...UInt64.max).description
        let now = ContinuousClock.now
        bodies.withLock { bodies in
            bodies = bodies.filter { now - $0.value.registered < Self.lifetime }
            bodies[key] = body
        }
        return key
    }

    func take(_ key: String) -> Body? { bodies.withLock { $0.removeValue(forKey: key) } }

    var pending: Int { bodies.withLock { $0.count } }
}

/// Writes a registered file body in place of the marker (see ``SendfileRegistry``).
final class SendfileHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Bytes per FileRegion: download activity is reported as each piece is sent.
    static let pieceBytes = FirmwareDownloadRoute.activityInterval

    private let registry: SendfileRegistry

    init(registry: SendfileRegistry) { self.registry = registry }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .head(var head) = unwrapOutboundIn(data), let key = head.headerFields[SendfileRegistry.marker] else {
            context.write(data, promise: promise)
            return
        }
        head.headerFields[SendfileRegistry.marker] = nil
        // The encoder's own context: what is written there goes to the socket as it is, which
        // is what the encoder does with a body whose length the head states.
        guard let body = registry.take(key), let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self),
            let file = try? NIOFileHandle(_deprecatedPath: body.path)
        else {
            // Nothing valid to send after a head announcing a length: end the connection.
            promise?.fail(ChannelError.ioOnClosedChannel)
            context.close(promise: nil)
            return
        }
        context.write(wrapOutboundOut(.head(head)), promise: promise)
        var offset = body.range.lowerBound
        var last: EventLoopFuture<Void> = context.eventLoop.makeSucceededVoidFuture()
        while offset <= body.range.upperBound {
            let end = min(offset + Self.pieceBytes, body.range.upperBound + 1)
            let region = FileRegion(fileHandle: file, readerIndex: offset, endIndex: end)
            let piece = context.eventLoop.makePromise(of: Void.self)
            let (count, served) = (end - offset, body.served)
            piece.futureResult.whenSuccess { served(count) }
            encoder.write(NIOAny(IOData.fileRegion(region)), promise: piece)
            last = piece.futureResult
            offset = end
        }
        last.whenComplete { _ in try? file.close() }
        context.flush()
    }
}
