import Foundation
import GRDB
import UpdraftCore

/// API tokens: name, scope and the SHA-256 of the secret (table `api_tokens`).
extension SQLiteStatusStore {
    private static let tokenColumns = "name, scope, secret_sha256, created_at, revoked_at"

    public func createToken(_ token: AccessToken) async throws {
        try await write { db in
            let taken = try Bool.fetchOne(db, sql: "SELECT 1 FROM api_tokens WHERE name = ?", arguments: [token.name.rawValue])
            if taken == true { throw UpdraftError.tokenExists(token.name) }
            try db.execute(
                sql: "INSERT INTO api_tokens (\(Self.tokenColumns)) VALUES (?, ?, ?, ?, ?)",
                arguments: [
                    token.name.rawValue, token.scope.rawValue, token.secretSHA256, token.createdAt.storeSeconds,
                    token.revokedAt?.storeSeconds,
                ])
        }
    }

    public func tokens() async throws -> [AccessToken] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.tokenColumns) FROM api_tokens ORDER BY name").map(Self.token)
        }
    }

    public func token(secretSHA256: String) async throws -> AccessToken? {
        try await read { db in
            try Row.fetchOne(
                db, sql: "SELECT \(Self.tokenColumns) FROM api_tokens WHERE secret_sha256 = ?", arguments: [secretSHA256]
            ).map(Self.token)
        }
    }

    public func revokeToken(_ name: TokenName, at date: Date) async throws -> AccessToken {
        try await write { db in
            try db.execute(
                sql: "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE name = ?",
                arguments: [date.storeSeconds, name.rawValue])
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT \(Self.tokenColumns) FROM api_tokens WHERE name = ?", arguments: [name.rawValue])
            else { throw UpdraftError.tokenNotFound(name) }
            return try Self.token(row)
        }
    }

    private static func token(_ row: Row) throws -> AccessToken {
        let scopeText = try row.text("scope")
        guard let scope = TokenScope(rawValue: scopeText) else { throw StoreErrors.corrupt("token scope", scopeText) }
        return AccessToken(
            name: try row.identifier("name"), scope: scope, secretSHA256: try row.text("secret_sha256"),
            createdAt: try row.date("created_at"), revokedAt: try row.optionalDate("revoked_at"))
    }
}
