import Foundation
import Testing
import UpdraftApp

/// `updraft device provision` and `updraft credentials show` through the real binary:
/// passwords shown once, only hashes kept, files 0600, reserved names refused.
@Suite(.serialized, .timeLimit(.minutes(3))) struct CredentialsCLITests {
    struct Account: Decodable, Equatable { let username: String; let password: String }

    static func json<T: Decodable>(_ type: T.Type, in output: String) throws -> T {
        let line = try #require(output.split(separator: "\n").first { $0.hasPrefix("[") || $0.hasPrefix("{") }, "\(output)")
        return try JSONDecoder().decode(T.self, from: Data(line.utf8))
    }

    static func mode(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func provisionShowsEachPasswordOnceAndKeepsOnlyItsHash() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = try await cli.dataDirectory()
        let run = try await cli.run(["device", "provision", "cli-1", "cli-2", "--json", "--data-dir", dir, "--log-level", "error"])
        #expect(run.status == 0, "\(run.output)")
        let accounts = try Self.json([Account].self, in: run.output)
        #expect(accounts.map(\.username) == ["cli-1", "cli-2"])
        #expect(Set(accounts.map(\.password)).count == 2 && accounts.allSatisfy { $0.password.count >= 32 })

        let file = dir + "/credentials/mosquitto.passwd"
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(try Self.mode(file) == 0o600)
        #expect(try Self.mode(dir + "/credentials") == 0o700)
        for account in accounts {
            #expect(text.contains("\(account.username):$7$101$"))
            #expect(!text.contains(account.password))
        }

        let shown = try await cli.run(["credentials", "show", "--json", "--data-dir", dir, "--log-level", "error"])
        #expect(shown.status == 0, "\(shown.output)")
        let service = try Self.json([String: Account].self, in: shown.output)
        #expect(service["gateway"]?.username == "updraft-gateway")
        #expect(service["events"]?.username == "updraft-gateway-events")
        #expect(try Self.mode(dir + "/credentials/gateway.password") == 0o600)
        // The same accounts every time: `updraft serve` and backends read them.
        let again = try await cli.run(["credentials", "show", "--json", "--data-dir", dir, "--log-level", "error"])
        #expect(try Self.json([String: Account].self, in: again.output) == service)
    }

    @Test func provisioningTheGatewaysOrAnInvalidNameIsRefused() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = try await cli.dataDirectory()
        for id in ["updraft-gateway", "updraft-gateway-events", "a/b", "x:y"] {
            let run = try await cli.run(["device", "provision", id, "--data-dir", dir, "--log-level", "error"])
            #expect(run.status == 1, "\(id) was provisioned: \(run.output)")
            #expect(run.errors.count == 1, "\(run.output)")
        }
        let file = dir + "/credentials/mosquitto.passwd"
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        #expect(!text.contains("updraft-gateway:"), "the gateway's hash was replaced by a device provisioning")
    }
}
