import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import UpdraftCore

#if canImport(Glibc)
import Glibc
#endif

/// `GET` and `HEAD /v1/fw/<device>/<job>?exp=<unix seconds>&sig=<mac>`: a device's firmware
/// image over HTTP, by the signed URL its offer carries (no bearer token: the URL is the
/// authorisation, checked by ``DeviceDownloads``).
///
/// Range (one range: 206 + Content-Range; past the end: 416), ETag = the quoted image
/// SHA-256, If-None-Match (304), If-Range, Accept-Ranges. The body is read from the image
/// file in ``chunkBytes`` pieces as the client takes them: a download never holds more
/// than a few pieces in memory, whatever the image size. Over plain HTTP the kernel sends
/// the file (`sendfile`, through ``SendfileRegistry``: no copy into user space); over
/// HTTPS each piece is one `pread` into a buffer, which TLS encrypts.
///
/// Not in openapi.yaml's generated server: it streams a file with Range semantics the
/// generated handlers cannot express. The operator API is unaffected.
struct FirmwareDownloadRoute: Sendable {
    /// Bytes per read from the image file and per write to the connection.
    static let chunkBytes = 256 << 10
    /// Bytes served between two reports of download activity to the gateway.
    static let activityInterval = 4 << 20

    let downloads: any DeviceDownloads
    /// Set when the connection handlers can send file regions (plain HTTP).
    var sendfile: SendfileRegistry? = nil

    static let path = "/v1/fw/:device/:job"

    func register(on router: Router<APIRequestContext>) {
        router.get(RouterPath(Self.path)) { request, context in await respond(request, context, head: false) }
        router.head(RouterPath(Self.path)) { request, context in await respond(request, context, head: true) }
    }

    func respond(_ request: Request, _ context: APIRequestContext, head: Bool) async -> Response {
        let query = request.uri.queryParameters
        let authorized = await downloads.authorize(
            device: context.parameters.get("device") ?? "", job: context.parameters.get("job") ?? "",
            expires: query.get("exp"), signature: query.get("sig"))
        let image: DownloadImage
        switch authorized {
        case .failure(let refusal): return Self.problem(refusal.status, refusal.error)
        case .success(let authorized): image = authorized
        }
        let etag = "\"\(image.sha256)\""
        var headers: HTTPFields = [.acceptRanges: "bytes", .eTag: etag, .cacheControl: "private, no-transform"]
        let conditions = DownloadConditions.evaluate(
            size: image.size, etag: etag, ifNoneMatch: request.headers[values: .ifNoneMatch], ifRange: request.headers[.ifRange],
            range: request.headers[.range])
        let status: HTTPResponse.Status
        let range: ClosedRange<Int>
        switch conditions {
        case .notModified:
            return Response(status: .notModified, headers: headers)
        case .unsatisfiable:
            var response = Self.problem(
                .rangeNotSatisfiable,
                UpdraftError("range_not_satisfiable", "The image has \(image.size) bytes; ask for a range that starts before the end."))
            response.headers[.contentRange] = "bytes */\(image.size)"
            return response
        case .whole:
            (status, range) = (.ok, 0...(image.size - 1))
        case .part(let part):
            (status, range) = (.partialContent, part)
            headers[.contentRange] = "bytes \(part.lowerBound)-\(part.upperBound)/\(image.size)"
        }
        headers[.contentType] = "application/octet-stream"
        headers[.contentLength] = String(range.count)
        if head { return Response(status: status, headers: headers, body: ResponseBody()) }
        if let sendfile {
            let downloads = downloads
            headers[SendfileRegistry.marker] = sendfile.register(
                .init(path: image.path, range: range, served: { bytes in Task { await downloads.served(image, bytes: bytes) } }))
            return Response(status: status, headers: headers, body: ResponseBody())
        }
        return Response(status: status, headers: headers, body: body(image, range))
    }

    /// Streams `range` of the image file, reporting activity as it goes.
    private func body(_ image: DownloadImage, _ range: ClosedRange<Int>) -> ResponseBody {
        let downloads = downloads
        return ResponseBody(contentLength: range.count) { writer in
            let file = try ImageFileReader(path: image.path)
            defer { file.close() }
            var offset = range.lowerBound
            var unreported = 0
            while offset <= range.upperBound {
                let buffer = try file.read(at: offset, count: min(Self.chunkBytes, range.upperBound + 1 - offset))
                try await writer.write(buffer)
                offset += buffer.readableBytes
                unreported += buffer.readableBytes
                if unreported >= Self.activityInterval {
                    await downloads.served(image, bytes: unreported)
                    unreported = 0
                }
            }
            if unreported > 0 { await downloads.served(image, bytes: unreported) }
            try await writer.finish(nil)
        }
    }

    static func problem(_ status: HTTPResponse.Status, _ error: UpdraftError) -> Response {
        let problem = Problem(status: status, code: error.code, detail: error.message)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(problem)) ?? Data()
        return Response(
            status: status, headers: [.contentType: "application/problem+json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// An open image file read with `pread` (page cache, no seek state shared between readers).
struct ImageFileReader {
    private let fd: Int32
    private let path: String

    init(path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        self.path = path
        guard fd >= 0 else { throw UpdraftError("image_unavailable", "The gateway cannot open the image right now; retry later.") }
    }

    /// `count` bytes at `offset`; throws when the file ends early or cannot be read.
    func read(at offset: Int, count: Int) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        var done = 0
        while done < count {
            let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count - done) { bytes in
                max(0, pread(fd, bytes.baseAddress, count - done, off_t(offset + done)))
            }
            guard n > 0 else {
                throw UpdraftError("image_unavailable", "The image file \(path) ended or failed at byte \(offset + done); retry later.")
            }
            done += n
        }
        return buffer
    }

    func close() { _ = Glibc.close(fd) }
}
