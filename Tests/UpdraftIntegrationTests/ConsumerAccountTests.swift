import Foundation
import Mosquitto
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// `updraft credentials add-consumer` / `remove-consumer` through the real binary beside a
/// running gateway: each backend consumer has its own account that reads the event stream
/// and nothing else, and loses it when removed (README "Who may connect").
@Suite(.serialized, .timeLimit(.minutes(3))) struct ConsumerAccountTests {
    typealias Account = CredentialsCLITests.Account

    static func addConsumer(_ name: String, _ cli: CLIProcess, _ dir: String) async throws -> Account {
        let run = try await cli.run(["credentials", "add-consumer", name, "--json", "--data-dir", dir, "--log-level", "error"])
        try #require(run.status == 0, "\(run.output)")
        return try CredentialsCLITests.json(Account.self, in: run.output)
    }

    /// A gateway (the harness) and the real CLI on its data directory.
    static func withGateway(_ body: (Harness, CLIProcess, String) async throws -> Void) async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        try await Harness.with { h in try await body(h, cli, h.stack.directory) }
    }

    static func consumer(_ account: Account, on h: Harness, subscribe: [String]) async throws -> RawDevice {
        // The broker reads the files at the SIGHUP the CLI sends: the first tries may be refused.
        try await eventually("\(account.username) connects") {
            await MQTTAuthenticationTests.connects(h, clientID: account.username, username: account.username, password: account.password)
        }
        return try await RawDevice.connect(account.username, broker: h.stack.brokerOptions(clientID: account.username), password: account.password, subscribe: subscribe)
    }

    /// Two consumers read the events of a release; neither can write the event stream,
    /// read a device's topics, or pose as a device called like itself. Removing one
    /// disconnects it and refuses it from then on; the other and the shared events
    /// account keep reading.
    @Test func aConsumerReadsEventsOnlyAndIsDisconnectedWhenRemoved() async throws {
        try await Self.withGateway { h, cli, dir in
            let analytics = try await Self.addConsumer("analytics", cli, dir)
            // The second through Operations in this process: a second `updraft` process
            // beside the harness's in-process gateway is followed by "database disk image
            // is malformed" on the gateway's next writes (seen with two `credentials show`
            // too, so not this command's doing; reported, not fixed here).
            let second = try h.ops.addConsumer("billing")
            let billing = Account(username: second.username, password: second.password)
            #expect(analytics.password != billing.password && analytics.password.count >= 32)
            let reader = try await Self.consumer(analytics, on: h, subscribe: ["updraft/events"])
            defer { Task { await reader.close() } }
            let spy = try await Self.consumer(billing, on: h, subscribe: ["updraft/d/victim-1/#", "updraft/d/billing/#", "#"])
            defer { Task { await spy.close() } }

            // Hostile: the spy writes a forged event and poses as a device named like itself.
            try? await spy.client.publish(topic: "updraft/events", payload: Array(#"{"seq":1,"kind":"forged"}"#.utf8), qos: .atLeastOnce, retain: false)
            try? await spy.client.publish(
                topic: "updraft/d/billing/announce", payload: Array(#"{"product":"thermo","version":"1.0"}"#.utf8), qos: .atLeastOnce, retain: false)
            let victim = try await RawDevice.connect("victim-1", on: h)
            defer { Task { await victim.close() } }
            try await victim.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            try await h.waitUntilRegistered(1)
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            _ = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["victim-1"]), allowDowngrade: false)
            #expect(try await victim.next("/job") != nil)

            let event = try #require(try await reader.next("events"), "analytics reads the event stream")
            #expect(!String(decoding: event.payload, as: UTF8.self).contains("forged"))
            // The spy got events (it may read them) and nothing else: no device topic, not its forgery.
            var seen: [MosquittoMessage] = []
            while let message = try await spy.next("", timeout: .seconds(1)) { seen.append(message) }
            #expect(!seen.isEmpty && seen.allSatisfy { $0.topic == "updraft/events" }, "\(seen.map(\.topic))")
            #expect(!seen.contains { String(decoding: $0.payload, as: UTF8.self).contains("forged") })
            #expect(try await h.ops.store.devices().map(\.id) == ["victim-1"], "a consumer registered as a device")

            let removed = try await cli.run(["credentials", "remove-consumer", "billing", "--data-dir", dir, "--log-level", "error"])
            #expect(removed.status == 0, "\(removed.output)")
            try await eventually(timeout: .seconds(5), "billing disconnected") { !spy.client.isConnected }
            #expect(!(await MQTTAuthenticationTests.connects(h, clientID: "billing", username: "billing", password: billing.password)))
            #expect(reader.client.isConnected)
            let events = try h.ops.serviceAccounts().events
            #expect(await MQTTAuthenticationTests.connects(h, clientID: events.username, username: events.username, password: events.password))

            let shown = try await cli.run(["credentials", "show", "--json", "--data-dir", dir, "--log-level", "error"])
            #expect(try CredentialsCLITests.json(CredentialsCLITests.ServiceAccounts.self, in: shown.output).consumers == ["analytics"])
            let again = try await cli.run(["credentials", "remove-consumer", "billing", "--data-dir", dir, "--log-level", "error"])
            #expect(again.status == 1 && again.errors.count == 1, "\(again.output)")
        }
    }

    /// A consumer's name is not a device's, either way round, and one account's password
    /// opens no other.
    @Test func aDeviceCannotUseAConsumersName() async throws {
        try await Self.withGateway { h, cli, dir in
            let analytics = try await Self.addConsumer("analytics", cli, dir)
            let devicePassword = try #require(try await h.stack.devicePassword("dev-1"))
            let provisioned = try await cli.run(["device", "provision", "analytics", "--data-dir", dir, "--log-level", "error"])
            #expect(provisioned.status == 1 && provisioned.errors.count == 1, "\(provisioned.output)")
            for name in ["dev-1", "updraft-gateway", "updraft-gateway-events", "a/b", "x:y"] {
                let run = try await cli.run(["credentials", "add-consumer", name, "--data-dir", dir, "--log-level", "error"])
                #expect(run.status == 1 && run.errors.count == 1, "\(name) became a consumer: \(run.output)")
            }
            let passwd = try String(contentsOfFile: dir + "/credentials/mosquitto.passwd", encoding: .utf8)
            #expect(passwd.components(separatedBy: "analytics:").count == 2 && !passwd.contains(analytics.password))

            try await eventually("analytics connects") {
                await MQTTAuthenticationTests.connects(h, clientID: "analytics", username: "analytics", password: analytics.password)
            }
            #expect(!(await MQTTAuthenticationTests.connects(h, clientID: "analytics", username: "analytics", password: devicePassword)))
            #expect(!(await MQTTAuthenticationTests.connects(h, clientID: "dev-1", username: "dev-1", password: analytics.password)))
            // The device still works with its own password: the refusals changed nothing.
            #expect(await MQTTAuthenticationTests.connects(h, clientID: "dev-1", username: "dev-1", password: devicePassword))
        }
    }
}
