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
///
/// Hummingbird's idle timeout counts a response as over once its (empty) end passed, which
/// is before the kernel has sent the file: a close it asks for while a file body is still
/// going out is held back as long as the body makes progress (a piece reaches the socket
/// within `stallTimeout`, 10 x http.idle_timeout), so a slow device's long download is not
/// cut, and a client that stops reading still is. Only devices with a signed URL get a body.
final class SendfileHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Bytes per FileRegion: the unit of progress (and of download activity reports).
    static let pieceBytes = 256 << 10
    /// A held-back close waits this many idle timeouts without a piece sent. The kernel's
    /// send buffer (up to 4 MiB on Linux) lets a piece complete only when a large part of
    /// it drained, so a slow reader's progress shows in bursts seconds apart.
    static let stallFactor = 10

    private let registry: SendfileRegistry
    private let stallTimeout: TimeAmount
    /// File bodies still being sent on this connection, and when a piece last went out.
    private var bodiesInFlight = 0
    private var lastProgress = NIODeadline.now()
    private var heldClose: (mode: CloseMode, promise: EventLoopPromise<Void>?)?

    init(registry: SendfileRegistry, stallTimeout: Duration = .seconds(30)) {
        self.registry = registry
        self.stallTimeout = .nanoseconds(Int64(stallTimeout / .nanoseconds(1)))
    }

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
        bodiesInFlight += 1
        lastProgress = .now()
        var offset = body.range.lowerBound
        var last: EventLoopFuture<Void> = context.eventLoop.makeSucceededVoidFuture()
        var unreported = 0
        while offset <= body.range.upperBound {
            let end = min(offset + Self.pieceBytes, body.range.upperBound + 1)
            let region = FileRegion(fileHandle: file, readerIndex: offset, endIndex: end)
            let piece = context.eventLoop.makePromise(of: Void.self)
            let (count, isLast) = (end - offset, end > body.range.upperBound)
            piece.futureResult.assumeIsolated().whenSuccess { [self] in
                lastProgress = .now()
                // Download activity in FirmwareDownloadRoute.activityInterval steps, as the buffered path reports it.
                unreported += count
                if unreported >= FirmwareDownloadRoute.activityInterval || isLast {
                    body.served(unreported)
                    unreported = 0
                }
            }
            encoder.write(NIOAny(IOData.fileRegion(region)), promise: piece)
            last = piece.futureResult
            offset = end
        }
        last.assumeIsolated().whenComplete { [self] _ in
            try? file.close()
            bodiesInFlight -= 1
            if bodiesInFlight == 0, let held = heldClose {
                heldClose = nil
                context.close(mode: held.mode, promise: held.promise)
            }
        }
        context.flush()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard bodiesInFlight > 0, heldClose == nil else { return context.close(mode: mode, promise: promise) }
        heldClose = (mode, promise)
        checkStall(context)
    }

    /// Closes a held-back connection once its file body stopped making progress.
    private func checkStall(_ context: ChannelHandlerContext) {
        guard let held = heldClose else { return }
        let stalledAt = lastProgress + stallTimeout
        guard NIODeadline.now() < stalledAt else {
            heldClose = nil
            return context.close(mode: held.mode, promise: held.promise)
        }
        context.eventLoop.assumeIsolated().scheduleTask(deadline: stalledAt) { [self] in checkStall(context) }
    }
}
