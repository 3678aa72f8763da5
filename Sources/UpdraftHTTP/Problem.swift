import Foundation
import HTTPTypes
import OpenAPIRuntime
import UpdraftCore

/// An RFC 9457 problem: what every error of the API is sent as
/// (`application/problem+json`), with the Updraft error code beside the standard members.
struct Problem: Error, Sendable, Encodable {
    var type: String = "about:blank"
    var title: String
    var status: Int
    var detail: String
    var code: String

    init(status: HTTPResponse.Status, code: String, detail: String) {
        self.title = status.reasonPhrase
        self.status = status.code
        self.detail = detail
        self.code = code
    }

    /// An Updraft error as a problem, with the status its code means.
    init(_ error: UpdraftError) {
        self.init(status: Self.status(of: error.code), code: error.code, detail: error.message)
    }

    static func status(of code: String) -> HTTPResponse.Status {
        if code.hasSuffix("_not_found") { return .notFound }
        if code.hasPrefix("invalid") || code == "bad_request" { return .badRequest }
        if code.hasSuffix("_exists") || code.hasSuffix("_conflict") { return .conflict }
        if code == "unauthorized" { return .unauthorized }
        if code == "insufficient_scope" { return .forbidden }
        return .internalServerError
    }

    static let unauthorized = Problem(
        status: .unauthorized, code: "unauthorized",
        detail: "Send a valid token as 'Authorization: Bearer <token>'. Make one with `updraft token create NAME --scope read`.")

    static func insufficientScope(_ token: AccessToken, needs scope: TokenScope) -> Problem {
        Problem(
            status: .forbidden, code: "insufficient_scope",
            detail: "Token \(token.name) has scope \(token.scope.rawValue); this call needs \(scope.rawValue) or above.")
    }

    var httpResponse: HTTPResponse {
        var fields = HTTPFields()
        fields[.contentType] = "application/problem+json"
        if status == 401 { fields[.wwwAuthenticate] = "Bearer realm=\"updraft\"" }
        return HTTPResponse(status: .init(code: status), headerFields: fields)
    }

    var body: HTTPBody {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return HTTPBody((try? encoder.encode(self)) ?? Data())
    }
}
