import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

extension HTTPTestClient {
    /// `method path` with an optional JSON body (a `[String: Any]` or raw bytes) and bearer token.
    package func call(_ method: String, _ path: String, token: String? = nil, json: Any? = nil) async throws -> HTTPTestResponse {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = HTTPMethod(rawValue: method)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let json {
            let bytes = try (json as? [UInt8]) ?? Array(JSONSerialization.data(withJSONObject: json))
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: bytes))
        }
        let response = try await client.execute(request, timeout: .seconds(20))
        let body = try await response.body.collect(upTo: 16 << 20)
        var headers: [String: String] = [:]
        for header in response.headers { headers[header.name.lowercased()] = header.value }
        return HTTPTestResponse(status: Int(response.status.code), headers: headers, body: Array(buffer: body))
    }
}
