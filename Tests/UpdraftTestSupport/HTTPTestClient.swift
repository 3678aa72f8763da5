import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL

/// What a test reads of an HTTP response.
package struct HTTPTestResponse: Sendable {
    package var status: Int
    package var headers: [String: String]
    package var body: [UInt8]

    package init(status: Int, headers: [String: String], body: [UInt8]) {
        (self.status, self.headers, self.body) = (status, headers, body)
    }

    package var text: String { String(decoding: body, as: UTF8.self) }

    /// The body as a JSON object (empty when it is not one).
    package var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }

    package func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// A real HTTP client (AsyncHTTPClient) for the API under test, on 127.0.0.1:`port`.
package struct HTTPTestClient: Sendable {
    package let port: Int
    package let client: HTTPClient
    private let scheme: String

    /// - Parameter trusting: a PEM certificate to trust: the client then speaks HTTPS.
    package init(port: Int, trusting certificate: String? = nil) {
        self.port = port
        scheme = certificate == nil ? "http" : "https"
        var configuration = HTTPClient.Configuration()
        if let certificate {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(certificate)
            configuration.tlsConfiguration = tls
        }
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// `GET path` with `Authorization: Bearer token` when a token is given.
    package func get(_ path: String, token: String? = nil, headers extra: [(String, String)] = []) async throws -> HTTPTestResponse {
        try await send(path, head: false, token: token, headers: extra)
    }

    /// `HEAD path`, as ``get(_:token:headers:)``.
    package func head(_ path: String, token: String? = nil, headers extra: [(String, String)] = []) async throws -> HTTPTestResponse {
        try await send(path, head: true, token: token, headers: extra)
    }

    private func send(_ path: String, head: Bool, token: String?, headers extra: [(String, String)]) async throws -> HTTPTestResponse {
        var request = HTTPClientRequest(url: "\(scheme)://127.0.0.1:\(port)\(path)")
        if head { request.method = .HEAD }
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        let response = try await client.execute(request, timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 16 << 20)
        var headers: [String: String] = [:]
        for header in response.headers { headers[header.name.lowercased()] = header.value }
        return HTTPTestResponse(status: Int(response.status.code), headers: headers, body: Array(buffer: body))
    }

    /// Any method, with a body: whole bytes (sent with Content-Length), or a stream of
    /// chunks of unknown length (sent chunked), as a client uploading a large file does.
    package func send(
        _ method: String, _ path: String, token: String? = nil, headers extra: [(String, String)] = [], body: [UInt8]? = nil,
        stream: (chunks: Int, size: Int)? = nil
    ) async throws -> HTTPTestResponse {
        var request = HTTPClientRequest(url: "\(scheme)://127.0.0.1:\(port)\(path)")
        request.method = .init(rawValue: method)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        if let stream {
            let chunk = ByteBuffer(repeating: 0x5A, count: stream.size)
            let chunks = AsyncStream<ByteBuffer> { continuation in
                for _ in 0..<stream.chunks { continuation.yield(chunk) }
                continuation.finish()
            }
            request.body = .stream(chunks, length: .unknown)
        }
        let response = try await client.execute(request, timeout: .seconds(60))
        let collected = try await response.body.collect(upTo: 16 << 20)
        var headers: [String: String] = [:]
        for header in response.headers { headers[header.name.lowercased()] = header.value }
        return HTTPTestResponse(status: Int(response.status.code), headers: headers, body: Array(buffer: collected))
    }

    package func shutdown() async {
        try? await client.shutdown()
    }
}
