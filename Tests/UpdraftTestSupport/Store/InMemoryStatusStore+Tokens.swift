import Foundation
import UpdraftCore

/// API tokens, with the SQLite store's rules (names never reused, secrets' hashes unique).
extension InMemoryStatusStore {
    package func createToken(_ token: AccessToken) async throws {
        try write { state in
            guard state.tokens[token.name] == nil else { throw UpdraftError.tokenExists(token.name) }
            guard !state.tokens.values.contains(where: { $0.secretSHA256 == token.secretSHA256 }) else {
                throw UpdraftError("store_constraint", "Another token has the same secret hash.")
            }
            state.tokens[token.name] = token
        }
    }

    package func tokens() async throws -> [AccessToken] {
        try read { $0.tokens.values.sorted { $0.name < $1.name } }
    }

    package func token(secretSHA256: String) async throws -> AccessToken? {
        try read { $0.tokens.values.first { $0.secretSHA256 == secretSHA256 } }
    }

    package func revokeToken(_ name: TokenName, at date: Date) async throws -> AccessToken {
        try write { state in
            guard var token = state.tokens[name] else { throw UpdraftError.tokenNotFound(name) }
            token.revokedAt = token.revokedAt ?? date
            state.tokens[name] = token
            return token
        }
    }
}
