import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import OpenAPIRuntime
import UpdraftCore

/// Sends the bearer token, and turns an error answer (RFC 9457 problem+json) into the
/// one-line ``UpdraftError`` the CLI prints: the server's detail, the status and code, and
/// for 401/403 what to do about the token.
struct RemoteProblemMiddleware: ClientMiddleware {
    let token: String
    let server: String

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        request.headerFields[.authorization] = "Bearer \(token)"
        let (response, responseBody) = try await next(request, body, baseURL)
        guard response.status.code >= 400 else { return (response, responseBody) }
        var bytes: [UInt8] = []
        if let responseBody { bytes = Array((try? await Data(collecting: responseBody, upTo: 64 * 1024)) ?? Data()) }
        throw Self.error(status: response.status.code, body: bytes, server: server)
    }

    struct Problem: Decodable {
        var status: Int?
        var detail: String?
        var code: String?
    }

    static func error(status: Int, body: [UInt8], server: String) -> UpdraftError {
        let problem = try? JSONDecoder().decode(Problem.self, from: Data(body))
        // A 413 may come with no body: the gateway refuses a large upload at once and closes
        // the connection while the image is still being sent (or a proxy refused it).
        let tooLarge = status == 413 && problem == nil
        let code = problem?.code ?? (tooLarge ? "firmware_too_large" : "http_\(status)")
        let detail =
            problem?.detail
            ?? (tooLarge
                ? "The image is larger than the gateway allows (firmware.max_image_bytes, or a proxy's limit). Raise that limit in the gateway's configuration, or upload a smaller image."
                : "The gateway at \(server) answered HTTP \(status) with no problem details.")
        switch status {
        case 401:
            return UpdraftError(
                code,
                "\(server) refused the token (401 \(code)): it is unknown, mistyped or revoked. Pass a valid one with --token or UPDRAFT_TOKEN; make one on the gateway host with `updraft token create NAME --scope read|operate|admin`."
            )
        case 403:
            return UpdraftError(
                code,
                "\(detail) (403 \(code)). Use a token with that scope: `updraft token create NAME --scope SCOPE` on the gateway host, or `updraft token list` to see the ones there are.")
        default:
            return UpdraftError(code, "\(detail) (\(status) \(code))")
        }
    }
}

/// What a failed call becomes: the problem the middleware made, or a clear message that
/// the gateway could not be reached, never a stack of transport errors.
func remoteError(_ error: any Error, server: String) -> any Error {
    if let error = error as? ClientError { return remoteError(error.underlyingError, server: server) }
    if let error = error as? UpdraftError { return error }
    if error is CancellationError { return error }
    let text = String(describing: error)
    let unreachable =
        error is IOError || error is ChannelError
        || (error as? HTTPClientError).map { [.connectTimeout, .remoteConnectionClosed, .readTimeout, .deadlineExceeded].contains($0) } ?? false
        || text.contains("refused") || text.contains("connect")
    if unreachable {
        return UpdraftError(
            "server_unreachable",
            "Cannot reach the gateway at \(server) (\(text.prefix(120))). Check the URL (--server or UPDRAFT_SERVER; the gateway's http.host and http.port), that `updraft serve` runs there (on that host: `updraft health`), and `curl \(server)/healthz`."
        )
    }
    return UpdraftError("server_answer", "The gateway at \(server) answered in a way this CLI does not understand (\(text.prefix(200))). Are the CLI and gateway the same version (`updraft --version`)?")
}

extension RemoteFleet {
    /// One API call, its failure made user-facing.
    func call<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch { throw remoteError(error, server: server.absoluteString) }
    }
}
