import Foundation
import LoopbackPorts
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// The event log reaches backends over HTTP whatever happens to `updraft serve`: an SSE
/// subscriber that reconnects with `Last-Event-ID` after a kill -9, and a webhook whose
/// cursor is in the store, both get every sequence number (once, after dropping duplicates).
@Suite(.timeLimit(.minutes(4))) struct EventsForBackendsTests {
    static let secret = "integration-webhook-secret"

    func serve(_ binary: String, _ folder: ServeFolder, httpPort: Int) throws -> ChildProcess {
        var environment = ProcessInfo.processInfo.environment
        environment.merge(servedBroker(port: folder.brokerPort)) { $1 }
        environment["UPDRAFT_COAP_ENABLED"] = "false"
        environment["UPDRAFT_HTTP_PORT"] = "\(httpPort)"
        environment["UPDRAFT_HTTP_SSE_KEEPALIVE"] = "1"
        environment["UPDRAFT_WEBHOOKS_BACKOFF_INITIAL_MS"] = "50"
        environment["UPDRAFT_WEBHOOKS_BACKOFF_MAX"] = "1"
        return try ChildProcess(
            executable: binary, arguments: ["serve", "--data-dir", folder.path, "--log-level", "warning"],
            outputFile: folder.path + "/serve-\(UUID().uuidString.prefix(6)).log", environment: environment)
    }

    @Test func sseAndWebhookGetEverySeqAcrossAKill9OfServe() async throws {
        let binary = try #require(ProcessRestartTests.updraftBinary, "build the updraft executable first")
        let folder = try await ServeFolder("updraft-sse", imageBytes: 120_000, seed: 21)
        let ops = folder.ops
        let httpPort = PortProbe.freePort()
        let token = try await ops.createToken(name: "backend", scope: "read").secret.value
        let receiver = WebhookReceiver { $0 % 4 == 1 ? .serviceUnavailable : .noContent }
        try await receiver.start()
        _ = try await ops.addWebhook(url: receiver.url, secret: Self.secret, kinds: nil, after: 0)
        let client = HTTPTestClient(port: httpPort)
        var gateways = [try serve(binary, folder, httpPort: httpPort)]
        defer { folder.remove(after: gateways) }

        try await eventually(timeout: .seconds(30), "the HTTP API") { (try? await client.get("/healthz").status) == 200 }
        let first = try await SSETestClient.open(client.client, port: httpPort, path: "/v1/events/stream", token: token)
        #expect(first.status == 200)
        let fleet = try await folder.startedFleet(6) { sim in
            sim.chunkSize = 1024
            sim.windowCount = 2
        }
        let plan = try await ops.createRelease(firmwareID: folder.firmware.id, target: .product("thermo"), allowDowngrade: false)
        try await eventually(timeout: .seconds(60), "downloads under way and streamed") {
            try await ops.store.jobs(release: plan.release.id).contains { $0.state == .downloading } && first.seqs.count > 20
        }
        kill(gateways[0].pid, SIGKILL)
        #expect(await gateways[0].waitForExit(timeout: .seconds(10)))
        try await eventually(timeout: .seconds(10), "the stream broken") { first.ended }
        // Committed while no gateway runs: the CLI writes the store.
        let ghosts = try (1...5).map { try DeviceID(validating: "ghost-sse-\($0)") }
        _ = try await ops.createRelease(firmwareID: folder.firmware.id, target: .devices(ghosts), allowDowngrade: false)

        gateways.append(try serve(binary, folder, httpPort: httpPort))
        try await eventually(timeout: .seconds(30), "the HTTP API again") { (try? await client.get("/healthz").status) == 200 }
        let lastSeen = try #require(first.seqs.last)
        let second = try await SSETestClient.open(
            client.client, port: httpPort, path: "/v1/events/stream?after=0", token: token, lastEventID: "\(lastSeen)")
        #expect(second.status == 200)
        try await eventually(timeout: .seconds(90), "the release to finish") {
            try await ops.store.jobs(release: plan.release.id).allSatisfy { $0.state == .succeeded }
        }
        await fleet.stop()
        try await Task.sleep(for: .milliseconds(500))
        let last = try await ops.store.lastEventSequence()
        try await eventually(timeout: .seconds(20), "the stream to reach seq \(last)") { (second.seqs.last ?? 0) >= last }
        try await eventually(timeout: .seconds(30), "the webhook to reach seq \(last)") { (receiver.accepted.flatMap(\.seqs).last ?? 0) >= last }

        for stream in [first, second] {
            #expect(zip(stream.seqs, stream.seqs.dropFirst()).allSatisfy { $0 < $1 }, "in order on each connection")
        }
        #expect(second.seqs.first == lastSeen + 1, "resumed right after the last id")
        // Devices going offline after the fleet stopped may add events past `last`.
        let streamed = Set(first.seqs + second.seqs).filter { $0 <= last }
        #expect(streamed == Set(1...last), "missing: \(Set(1...last).subtracting(streamed).sorted().prefix(20))")
        #expect(second.comments.contains("keep-alive") || first.comments.contains("keep-alive"))
        let hooked = receiver.accepted.flatMap(\.seqs)
        #expect(Set(hooked).filter { $0 <= last } == Set(1...last), "webhook missing: \(Set(1...last).subtracting(hooked).sorted().prefix(20))")
        #expect(zip(hooked, hooked.dropFirst()).filter { $0 >= $1 }.count <= 1, "in order but for one batch resent after the kill")
        #expect(receiver.received.allSatisfy { WebhookReceiver.verify($0, secret: Self.secret) })
        await first.close()
        await second.close()
        await client.shutdown()
        await receiver.stop()
        kill(gateways[1].pid, SIGTERM)
        _ = await gateways[1].waitForExit(timeout: .seconds(15))
    }
}
