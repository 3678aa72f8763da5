import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

/// `updraft token`: bearer tokens of the HTTP API.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Bearer tokens of the HTTP API (create, list, revoke).",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a token and print its secret (shown once: only its SHA-256 is stored).",
            discussion: """
                Scopes include the ones below them: read (GET everything), operate (also change \
                releases, jobs and devices), admin (also delete and manage webhooks). Send it as \
                'Authorization: Bearer <secret>'. Names are never reused, even after revoke.
                """)
        static var storeAccess: UpdraftStoreFactory.Access { .create }
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The token's name (recorded as the actor of what it changes).") var name: String
        @Option(help: "read, operate or admin.") var scope: String
        @Flag(help: "Print a JSON object {name, scope, secret}.") var json = false

        func run(_ ops: Operations) async throws {
            let (token, secret) = try await ops.createToken(name: name, scope: scope)
            if json {
                print(try jsonText(["name": token.name.rawValue, "scope": token.scope.rawValue, "secret": secret.value]))
            } else {
                print(secret.value)
                FileHandle.standardError.write(Data("Token \(token.name) (\(token.scope.rawValue)): store the secret above now; it is not shown again.\n".utf8))
            }
        }
    }

    struct List: FleetCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens: name, scope, created, revoked (never secrets).")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print a JSON array of {name, scope, created_at, revoked_at}.") var json = false

        func run(_ fleet: any FleetClient) async throws {
            let tokens = try await fleet.tokens()
            if json {
                print(try jsonText(tokens))
                return
            }
            if tokens.isEmpty { print("No tokens yet. Make one with `updraft token create NAME --scope read`.") }
            for row in tokens { print("\(row.name)\t\(row.scope)\t\(row.created_at)\t\(row.revoked_at ?? "-")") }
        }
    }

    struct Revoke: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token: the next request with it gets 401, also on a running gateway.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The token's name.") var name: String

        func run(_ ops: Operations) async throws {
            let token = try await ops.revokeToken(name: name)
            print("Token \(token.name) revoked at \(token.revokedAt.map { $0.formatted(.iso8601) } ?? "-").")
        }
    }
}
