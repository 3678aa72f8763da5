import Foundation
import Testing
import UpdraftCore

/// API tokens, as every `StatusStore` must keep them.
package enum TokenStoreContract {
    package static let checks: [StoreContractCheck] = [
        StoreContractCheck("tokens are found by the hash of their secret, never by the secret", tokenLookup),
        StoreContractCheck("a token name is never reused, even after revoke", tokenNameTaken),
        StoreContractCheck("revokeToken keeps the first date and throws token_not_found for an unknown name", tokenRevoke),
    ]

    static func token(_ name: TokenName, _ scope: TokenScope, _ secret: TokenSecret) -> AccessToken {
        AccessToken(name: name, scope: scope, secretSHA256: secret.sha256, createdAt: Date(timeIntervalSince1970: 1_700_000_000))
    }

    static func tokenLookup(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let (a, b) = (TokenSecret.generate(), TokenSecret.generate())
        #expect(a != b)
        try await store.createToken(token("ci", .read, a))
        try await store.createToken(token("ops", .admin, b))
        #expect(try await store.token(secretSHA256: a.sha256)?.name == "ci")
        #expect(try await store.token(secretSHA256: b.sha256)?.scope == .admin)
        // The secret itself is not a key: whoever reads the table cannot use what it holds.
        #expect(try await store.token(secretSHA256: a.value) == nil)
        #expect(try await store.token(secretSHA256: TokenSecret.generate().sha256) == nil)
        #expect(try await store.tokens().map(\.name) == ["ci", "ops"])
        // Another handle (the CLI next to a running gateway) sees it.
        #expect(try await fixture.openAnother().token(secretSHA256: a.sha256)?.name == "ci")
    }

    static func tokenNameTaken(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        try await store.createToken(token("ci", .read, .generate()))
        try await store.revokeToken("ci", at: Date(timeIntervalSince1970: 1_700_000_100))
        let error = await #expect(throws: UpdraftError.self) { try await store.createToken(token("ci", .admin, .generate())) }
        #expect(error?.code == "token_exists")
        #expect(try await store.tokens().count == 1)
        #expect(try await store.tokens().first?.scope == .read)
    }

    static func tokenRevoke(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let secret = TokenSecret.generate()
        try await store.createToken(token("ci", .operate, secret))
        let first = Date(timeIntervalSince1970: 1_700_000_100)
        #expect(try await store.revokeToken("ci", at: first).revokedAt == first)
        #expect(try await store.revokeToken("ci", at: first.addingTimeInterval(50)).revokedAt == first)
        #expect(try await store.token(secretSHA256: secret.sha256)?.isRevoked == true)
        let error = await #expect(throws: UpdraftError.self) { try await store.revokeToken("nobody", at: first) }
        #expect(error?.code == "token_not_found")
    }
}
