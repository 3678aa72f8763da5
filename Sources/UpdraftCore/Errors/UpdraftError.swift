/// An error that reaches a user (operator, device or backend): a stable code that
/// programs can match and a message that says what happened and what to do next.
public struct UpdraftError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: String
    public let message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(message) [\(code)]" }
}

extension UpdraftError {
    /// `invalid_<what>`, with the spaces of `what` as underscores (`invalid_device_id`): a
    /// code is one token that clients match on.
    public static func invalid(_ what: String, _ value: String, rule: String) -> UpdraftError {
        UpdraftError("invalid_" + String(what.map { $0 == " " ? "_" : $0 }), "Invalid \(what) '\(value.prefix(80))': \(rule).")
    }

    public static func notFound(_ what: String, _ id: String, hint: String) -> UpdraftError {
        UpdraftError("\(what)_not_found", "No \(what) '\(id.prefix(80))'. \(hint)")
    }
}

extension UpdraftError {
    /// A firmware a release refers to cannot leave the catalog.
    public static func firmwareInUse(_ id: FirmwareID, release: ReleaseID) -> UpdraftError {
        UpdraftError(
            "firmware_in_use",
            "Firmware \(id) is used by release \(release) (`updraft release show \(release)`); releases are the record of what devices were sent, so it stays in the catalog. Only firmware no release, lock or verification names can be deleted.")
    }
}
