import Foundation
import UpdraftCore

/// API tokens of the HTTP API: made here, shown once, stored as the SHA-256 of the secret.
extension Operations {
    /// Makes a token named `name` with `scope`; the secret is returned once and kept nowhere.
    public func createToken(name: String, scope: String) async throws -> (token: AccessToken, secret: TokenSecret) {
        let token = try TokenName(validating: name)
        let tokenScope = try TokenScope(validating: scope)
        let secret = TokenSecret.generate()
        let stored = AccessToken(name: token, scope: tokenScope, secretSHA256: secret.sha256, createdAt: Date())
        try await store.createToken(stored)
        return (stored, secret)
    }

    public func tokens() async throws -> [AccessToken] { try await store.tokens() }

    /// Revokes at once: a running gateway looks tokens up in the store on every request.
    public func revokeToken(name: String) async throws -> AccessToken {
        try await store.revokeToken(try TokenName(validating: name), at: Date())
    }
}
