import Foundation
import HTTPTypes
import Hummingbird
import OpenAPIHummingbird
import OpenAPIRuntime
import Synchronization

/// Every route the server has, by path template and method, as they are registered: what
/// a request that matches no route is answered from (404 `not_found`, or 405
/// `method_not_allowed` with `Allow` when the path exists with other methods).
final class RouteTable: Sendable {
    private let routes = Mutex<[(segments: [Substring], methods: Set<String>)]>([])

    /// Records `method` on `path` (OpenAPI `{name}` or Hummingbird `:name` parameters).
    func record(_ method: HTTPRequest.Method, _ path: String) {
        let segments = Self.segments(path).map { $0.hasPrefix(":") || $0.hasPrefix("{") ? "*" : $0 }
        routes.withLock { routes in
            if let index = routes.firstIndex(where: { $0.segments == segments }) {
                routes[index].methods.insert(method.rawValue)
            } else {
                routes.append((segments, [method.rawValue]))
            }
        }
    }

    /// The methods of the routes whose template matches `path`; empty when none does.
    func methods(of path: String) -> Set<String> {
        let asked = Self.segments(path)
        return routes.withLock { routes in
            routes.filter { route in
                route.segments.count == asked.count && zip(route.segments, asked).allSatisfy { $0 == "*" || $0 == $1 }
            }.reduce(into: Set<String>()) { $0.formUnion($1.methods) }
        }
    }

    private static func segments(_ path: String) -> [Substring] {
        let bare = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return bare.split(separator: "/")
    }
}

/// The generated handlers' transport: Hummingbird's router, with each route recorded.
struct RecordingTransport: ServerTransport {
    let router: Router<APIRequestContext>
    let table: RouteTable

    func register(
        _ handler: @Sendable @escaping (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?),
        method: HTTPRequest.Method, path: String
    ) throws {
        table.record(method, path)
        try router.register(handler, method: method, path: path)
    }
}

/// Turns Hummingbird's bare 404 for a request no route takes into a problem: 405 with
/// `Allow` when the path has other methods, else 404 `not_found`.
struct NoRouteMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let table: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && context.coreContext.endpointPath.value == "NotFound" {
            let allowed = table.methods(of: request.uri.path)
            let problem =
                allowed.isEmpty
                ? Problem(
                    status: .notFound, code: "not_found",
                    detail: "No endpoint at this path. The API's paths are in GET /openapi.yaml (they start with /v1).")
                : Problem(
                    status: .methodNotAllowed, code: "method_not_allowed",
                    detail: "This path does not take \(request.method.rawValue.prefix(20)); it takes \(allowed.sorted().joined(separator: ", ")).")
            var response = problem.httpResponse
            if !allowed.isEmpty { response.headerFields[.allow] = allowed.sorted().joined(separator: ", ") }
            return Response(status: response.status, headers: response.headerFields, body: .init(byteBuffer: ByteBuffer(bytes: problem.bytes)))
        }
    }
}
