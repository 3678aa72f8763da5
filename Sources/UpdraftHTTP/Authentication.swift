import Foundation
import HTTPTypes
public import Hummingbird
public import HummingbirdAuth
import OpenAPIRuntime
public import UpdraftCore

/// The request context of the API: the token that authenticated the request, if any.
public struct APIRequestContext: AuthRequestContext, RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: AccessToken?

    public init(source: Source) {
        coreContext = .init(source: source)
        identity = nil
    }
}

/// Bearer tokens through hummingbird-auth: the secret's SHA-256 looked up in the status
/// store. Unknown or revoked tokens authenticate nothing (the scope check then answers 401).
struct TokenAuthenticator: AuthenticatorMiddleware {
    typealias Context = APIRequestContext
    let store: any StatusStore

    func authenticate(request: Request, context: Context) async throws -> AccessToken? {
        guard let bearer = request.headers.bearer, !bearer.token.isEmpty, bearer.token.utf8.count <= 256 else { return nil }
        guard let token = try await store.token(secretSHA256: TokenSecret.sha256(of: bearer.token)), !token.isRevoked else {
            return nil
        }
        return token
    }
}

/// Hands the authenticated token to the generated handlers' middleware (which see no
/// Hummingbird context) for the duration of the request.
struct CallerMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    @TaskLocal static var current: AccessToken?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try await Self.$current.withValue(context.identity) { try await next(request, context) }
    }
}

/// The scope each operation of openapi.yaml needs; `nil`: none (no token). An operation
/// missing here is refused to everyone (fail closed): a new endpoint must be added.
enum OperationScopes {
    static let required: [String: TokenScope?] = [
        Operations.GetHealth.id: .none,
        Operations.GetReadiness.id: .read,
        Operations.GetMetrics.id: .read,
        Operations.GetOpenAPIDocument.id: .read,
        Operations.ListFirmware.id: .read,
        Operations.ListDevices.id: .read,
        Operations.GetDevice.id: .read,
        Operations.ListReleases.id: .read,
        Operations.ListEvents.id: .read,
        Operations.StreamEvents.id: .read,
        Operations.ListWebhooks.id: .admin,
        Operations.AddWebhook.id: .admin,
        Operations.GetWebhook.id: .admin,
        Operations.RemoveWebhook.id: .admin,
        Operations.EnableWebhook.id: .admin,
        Operations.ListTokens.id: .admin,
        // Firmware (FirmwareHandlers): deleting needs admin.
        Operations.UploadFirmware.id: .operate,
        Operations.GetFirmware.id: .read,
        Operations.VerifyFirmware.id: .operate,
        Operations.DeleteFirmware.id: .admin,
        // Releases (ReleaseHandlers).
        Operations.CreateRelease.id: .operate,
        Operations.GetRelease.id: .read,
        Operations.PauseRelease.id: .operate,
        Operations.ResumeRelease.id: .operate,
        Operations.AdvanceRelease.id: .operate,
        Operations.CancelRelease.id: .operate,
        // Devices, groups, jobs, stats (DeviceHandlers, JobHandlers, StatsHandlers):
        // decommissioning revokes credentials, so it needs admin.
        Operations.LockDevice.id: .operate,
        Operations.UnlockDevice.id: .operate,
        Operations.SetDeviceDevelopment.id: .operate,
        Operations.DecommissionDevice.id: .admin,
        Operations.AddGroupDevices.id: .operate,
        Operations.RemoveGroupDevices.id: .operate,
        Operations.GetJob.id: .read,
        Operations.CancelJob.id: .operate,
        Operations.GetVersionStats.id: .read,
    ]

    /// The content types an operation's request body may have (415 otherwise).
    static let bodyTypes: [String: [String]] = [
        Operations.UploadFirmware.id: ["application/octet-stream"],
        Operations.VerifyFirmware.id: ["application/json"],
        Operations.CreateRelease.id: ["application/json"],
        Operations.LockDevice.id: ["application/json"],
        Operations.SetDeviceDevelopment.id: ["application/json"],
        Operations.AddGroupDevices.id: ["application/json"],
        Operations.RemoveGroupDevices.id: ["application/json"],
    ]
}

/// Checks the caller's scope against the operation's, and turns every error of the
/// generated server (bad input, a handler's UpdraftError) into problem+json.
struct ScopeAndProblemMiddleware: ServerMiddleware {
    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        guard let entry = OperationScopes.required[operationID] else {
            let problem = Problem(status: .forbidden, code: "insufficient_scope", detail: "Operation \(operationID) is not open to any token.")
            return (problem.httpResponse, problem.body)
        }
        if let scope = entry {
            guard let caller = CallerMiddleware.current else { return (Problem.unauthorized.httpResponse, Problem.unauthorized.body) }
            guard caller.scope >= scope else {
                let problem = Problem.insufficientScope(caller, needs: scope)
                return (problem.httpResponse, problem.body)
            }
        }
        if let accepted = OperationScopes.bodyTypes[operationID] {
            let received = request.headerFields[.contentType]
            let media = received?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard let media, accepted.contains(media) else {
                let problem = Problem.unsupportedMediaType(received, accepted: accepted)
                return (problem.httpResponse, problem.body)
            }
        }
        do {
            return try await next(request, body, metadata)
        } catch {
            let problem = Self.problem(for: error)
            return (problem.httpResponse, problem.body)
        }
    }

    static func problem(for error: any Error) -> Problem {
        var cause = error
        if let server = error as? ServerError { cause = server.underlyingError }
        if let problem = cause as? Problem { return problem }
        if let updraft = cause as? UpdraftError { return Problem(updraft) }
        if let server = error as? ServerError, server.operationInput == nil {
            // Before any handler ran: the request did not match the document (a query value
            // of the wrong type, a missing parameter).
            return Problem(status: .badRequest, code: "bad_request", detail: BadRequestDetail.detail(for: server))
        }
        return Problem(status: .internalServerError, code: "internal", detail: "The server failed; see its log.")
    }
}
