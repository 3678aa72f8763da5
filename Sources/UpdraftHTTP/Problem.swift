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

    /// Codes of a change the current state refuses (409).
    static let conflicts: Set<String> = [
        "firmware_in_use", "job_finished", "not_locked", "release_is_lock", "not_a_fleet_release", "rollout_completed",
        "rollout_last_stage", "rollout_paused", "rollout_stopped", "firmware_unverified", "firmware_verifying",
        "firmware_already_verified", "firmware_verification_failed", "verification_in_progress", "active_job_exists",
        "device_revoked", "job_installing",
    ]
    /// Codes of a well-formed request whose content is refused (422).
    static let unprocessable: Set<String> = [
        "invalid_release_options", "invalid_stages", "invalid_threshold", "invalid_selection", "invalid_percentage", "invalid_rate",
        "invalid_retry", "invalid_timeout", "invalid_stage_duration", "invalid_target", "product_mismatch", "unknown_devices",
        "manifest_image_mismatch", "manifest_key_untrusted", "manifest_malformed", "manifest_sequence", "manifest_signature",
        "downgrade_refused", "verification_no_devices", "schedule_in_past", "firmware_empty", "no_trusted_keys", "key_missing",
        "firmware_image_missing", "firmware_image_corrupt",
        // The gateway's own key files are broken: like `key_missing`, the upload cannot be
        // signed here, and the caller can still send a manifest signed elsewhere.
        "invalid_signing_key", "invalid_public_key",
        // Every parameter valid, their combination refused (half a signing shape).
        "invalid_upload",
        "device_id_reserved",
    ]

    static func status(of code: String) -> HTTPResponse.Status {
        if code.hasSuffix("_not_found") { return .notFound }
        if conflicts.contains(code) { return .conflict }
        if unprocessable.contains(code) { return .unprocessableContent }
        if code == "firmware_too_large" { return .contentTooLarge }
        if code.hasPrefix("invalid") || code == "bad_request" { return .badRequest }
        if code.hasSuffix("_exists") || code.hasSuffix("_conflict") { return .conflict }
        if code == "unauthorized" { return .unauthorized }
        if code == "insufficient_scope" { return .forbidden }
        if code == "not_found" { return .notFound }
        if code == "unsupported_media_type" { return .unsupportedMediaType }
        if code == "method_not_allowed" { return .methodNotAllowed }
        if code == "changes_unavailable" { return .serviceUnavailable }
        return .internalServerError
    }

    static let unauthorized = Problem(
        status: .unauthorized, code: "unauthorized",
        detail: "Send a valid token as 'Authorization: Bearer <token>'. Make one with `updraft token create NAME --scope read`.")

    static func tooLarge(_ limit: Int64) -> Problem {
        Problem(
            status: .contentTooLarge, code: "firmware_too_large",
            detail: "The image is larger than firmware.max_image_bytes (\(limit) bytes). Raise that limit in the gateway's configuration, or upload a smaller image.")
    }

    static func unsupportedMediaType(_ received: String?, accepted: [String]) -> Problem {
        Problem(
            status: .unsupportedMediaType, code: "unsupported_media_type",
            detail: "This call takes Content-Type \(accepted.joined(separator: " or ")), not \(received.map { "'\($0.prefix(80))'" } ?? "none").")
    }

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

    var body: HTTPBody { HTTPBody(bytes) }

    var bytes: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }
}
