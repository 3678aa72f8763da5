import Foundation
import LoopbackPorts
import Testing
import UpdraftCore
import UpdraftTestSupport

/// `updraft token` through the real binary next to a running `updraft serve`: the secret
/// is shown once and stored nowhere, a revoke takes effect on the next request.
@Suite(.serialized, .timeLimit(.minutes(3))) struct TokenCLITests {
    @Test func aTokenMadeByTheCLIWorksUntilRevoked() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = cli.logs + "/data"
        let (brokerPort, httpPort) = (PortProbe.freePort(), PortProbe.freePort())
        let (gateway, log) = try cli.start(
            ["serve", "--data-dir", dir, "--log-level", "info"],
            environment: ["UPDRAFT_MQTT_BROKER_PORT": "\(brokerPort)", "UPDRAFT_COAP_ENABLED": "false", "UPDRAFT_HTTP_PORT": "\(httpPort)"])
        defer { killAll([gateway], brokerOf: dir) }
        let client = HTTPTestClient(port: httpPort)
        defer { Task { await client.shutdown() } }
        try await eventually(timeout: .seconds(30), "serve answers /healthz") { (try? await client.get("/healthz"))?.status == 200 }

        let created = try await cli.run(["token", "create", "ci", "--scope", "read", "--data-dir", dir])
        try #require(created.status == 0, "\(created.output)")
        let secret = try #require(created.output.split(separator: "\n").first { $0.hasPrefix(TokenSecret.prefix) }.map(String.init))
        #expect(secret.count == TokenSecret.prefix.count + 43)
        #expect(try await client.get("/v1/firmware", token: secret).status == 200)
        #expect(try await client.get("/v1/tokens", token: secret).status == 403)

        // Only the hash is stored: the secret is in no file of the data directory.
        for file in try FileManager.default.subpathsOfDirectory(atPath: dir) {
            guard let data = FileManager.default.contents(atPath: dir + "/" + file) else { continue }
            #expect(data.range(of: Data(secret.utf8)) == nil, "the secret is in \(file)")
        }
        let listed = try await cli.run(["token", "list", "--json", "--data-dir", dir])
        #expect(listed.output.contains("\"name\":\"ci\""), "\(listed.output)")
        #expect(!listed.output.contains(secret))
        #expect(!listed.output.contains(TokenSecret.sha256(of: secret)))

        // Hostile twins: a taken name, an unknown scope, an unknown token to revoke.
        let again = try await cli.run(["token", "create", "ci", "--scope", "admin", "--data-dir", dir])
        #expect(again.status == 1 && again.errors.first?.contains("exists") == true, "\(again.output)")
        let badScope = try await cli.run(["token", "create", "x", "--scope", "root", "--data-dir", dir])
        #expect(badScope.status == 1 && badScope.errors.first?.contains("read, operate or admin") == true, "\(badScope.output)")
        let unknown = try await cli.run(["token", "revoke", "nobody", "--data-dir", dir])
        #expect(unknown.status == 1, "\(unknown.output)")

        let revoked = try await cli.run(["token", "revoke", "ci", "--data-dir", dir])
        #expect(revoked.status == 0, "\(revoked.output)")
        #expect(try await client.get("/v1/firmware", token: secret).status == 401)
        let after = try await cli.run(["token", "list", "--json", "--data-dir", dir])
        #expect(after.output.contains("revoked_at"), "\(after.output)")

        gateway.signal(SIGTERM)
        #expect(await gateway.waitForExit(timeout: .seconds(30)))
        #expect(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("HTTP API listening"))
    }
}
