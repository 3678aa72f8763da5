import AsyncHTTPClient
import Foundation
import NIOCore
import UpdraftCore

/// How a reference device fetches its image when it downloads over HTTP: `GET` of the
/// signed URL its offer carries, and after an interrupted transfer (a dropped connection,
/// a timeout, an injected cut) `Range: bytes=<have>-` with `If-Range: "<sha256>"`, so only
/// the missing tail comes again — or, should the image have changed, the whole of it
/// (200). The caller verifies the SHA-256 and the manifest signature as for chunks.
struct HTTPImageFetch: Sendable {
    enum Outcome: Sendable {
        case image([UInt8], resumes: Int)
        /// The gateway refused (problem+json `code`, HTTP status): an expired URL wants a
        /// fresh offer, an ended job nothing more.
        case refused(status: Int, code: String)
        case failed(String)
    }

    struct Interrupted: Error {}

    var url: String
    var size: Int
    var sha256: String
    var maxRetries: Int
    var retryDelay: Duration
    /// Fault injection: cut the transfer once when it passes this percent.
    var interruptAtPercent: Int?

    /// Fetches from `prefix.count` on; `progress` gets the bytes held after each piece.
    func run(prefix: [UInt8], progress: @Sendable (Int) async -> Void) async -> Outcome {
        var image = prefix
        image.reserveCapacity(size)
        var failures = 0
        var resumes = 0
        var interrupt = interruptAtPercent
        while image.count < size {
            if Task.isCancelled { return .failed("cancelled") }
            do {
                if let refused = try await fetch(into: &image, interrupt: &interrupt, progress: progress) { return refused }
                failures = 0
            } catch {
                failures += 1
                if failures > maxRetries { return .failed("\(failures) HTTP requests failed in a row; last: \(error)") }
                try? await Task.sleep(for: retryDelay)
            }
            if image.count < size { resumes += 1 }
        }
        return .image(image, resumes: resumes)
    }

    /// One request from `image.count`; returns a refusal, or nil when bytes came (all or some).
    private func fetch(into image: inout [UInt8], interrupt: inout Int?, progress: @Sendable (Int) async -> Void) async throws -> Outcome? {
        var request = HTTPClientRequest(url: url)
        if !image.isEmpty {
            request.headers.add(name: "Range", value: "bytes=\(image.count)-")
            request.headers.add(name: "If-Range", value: "\"\(sha256)\"")
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(600))
        switch response.status.code {
        case 200:
            image.removeAll(keepingCapacity: true)
        case 206:
            guard Self.rangeStart(response.headers.first(name: "Content-Range")) == image.count else {
                return .failed("the server sent a range that does not start at byte \(image.count)")
            }
        default:
            let body = try await response.body.collect(upTo: 16 << 10)
            return .refused(status: Int(response.status.code), code: Self.problemCode(body) ?? "http_\(response.status.code)")
        }
        for try await buffer in response.body {
            image.append(contentsOf: buffer.readableBytesView)
            guard image.count <= size else { return .failed("the server sent more than the manifest's \(size) bytes") }
            await progress(image.count)
            if let at = interrupt, image.count < size, image.count * 100 / size >= at {
                interrupt = nil
                throw Interrupted()
            }
        }
        return nil
    }

    static func rangeStart(_ header: String?) -> Int? {
        guard let header, header.hasPrefix("bytes "), let dash = header.firstIndex(of: "-") else { return nil }
        return Int(header[header.index(header.startIndex, offsetBy: 6)..<dash])
    }

    static func problemCode(_ body: ByteBuffer) -> String? {
        struct Problem: Decodable { var code: String }
        return try? JSONDecoder().decode(Problem.self, from: Data(body.readableBytesView)).code
    }
}
