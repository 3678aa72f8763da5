import Foundation

/// The name of an API token: who made a call (the actor of what it changes).
public struct TokenName: ValidatedIdentifier {
    public static let kind = "token name"
    public static let maxLength = 64
    public let rawValue: String
    public init(unchecked: String) { rawValue = unchecked }
}

/// What a token may do. Each scope includes the ones below it: `admin` ⊃ `operate` ⊃ `read`.
public enum TokenScope: String, Sendable, Codable, CaseIterable, Comparable {
    /// Read the catalog, devices, releases, events and metrics.
    case read
    /// Also start, pause and cancel releases and jobs, lock devices.
    case operate
    /// Also manage tokens, webhooks and delete things.
    case admin

    private var rank: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }

    public init(validating value: String) throws(UpdraftError) {
        guard let scope = Self(rawValue: value) else {
            throw UpdraftError("invalid_scope", "Unknown token scope '\(value)'. Use read, operate or admin.")
        }
        self = scope
    }
}

/// An API token as stored: its name, scope and the SHA-256 of its secret, never the
/// secret itself. The secret is 256 random bits, so a plain hash is enough (no
/// password-stretching: nothing can be guessed from a hash of a secret that was never
/// chosen by a person), and a lookup by hash costs one index probe.
public struct AccessToken: Sendable, Equatable, Codable {
    public var name: TokenName
    public var scope: TokenScope
    /// Lowercase hex SHA-256 of the secret.
    public var secretSHA256: String
    public var createdAt: Date
    /// When it was revoked; a revoked token authorises nothing, and its name stays taken.
    public var revokedAt: Date?

    public init(name: TokenName, scope: TokenScope, secretSHA256: String, createdAt: Date, revokedAt: Date? = nil) {
        (self.name, self.scope, self.secretSHA256, self.createdAt, self.revokedAt) = (name, scope, secretSHA256, createdAt, revokedAt)
    }

    public var isRevoked: Bool { revokedAt != nil }
}

/// A new token's secret, shown once: `updraft_` and 43 base64url characters (256 bits).
public struct TokenSecret: Sendable, Equatable, CustomStringConvertible {
    public static let prefix = "updraft_"
    public let value: String

    /// 32 bytes from the system's secure random generator.
    public static func generate() -> TokenSecret {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let text = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return TokenSecret(value: prefix + text)
    }

    public init(value: String) { self.value = value }

    /// What the store keeps and looks tokens up by.
    public var sha256: String { Self.sha256(of: value) }

    public static func sha256(of secret: String) -> String {
        Digest.sha256Hex(Array(secret.utf8))
    }

    public var description: String { value }
}
