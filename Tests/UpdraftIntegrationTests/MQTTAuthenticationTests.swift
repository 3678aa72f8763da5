import Foundation
import Mosquitto
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport

/// The managed broker's password file and client-id binding, tried as a hostile client
/// on the same host would (README "Attacks").
@Suite(.timeLimit(.minutes(3))) struct MQTTAuthenticationTests {
    static func client(_ h: Harness, clientID: String, username: String?, password: String?) -> (MosquittoClient, MosquittoEventLoop) {
        let loop = MosquittoEventLoop(name: "auth-\(clientID)")
        var options = h.stack.brokerOptions(clientID: clientID)
        (options.username, options.password) = (username, password)
        return (MosquittoClient(options: options, loop: loop, logger: Harness.logger), loop)
    }

    /// Whether a client with these credentials gets connected.
    static func connects(_ h: Harness, clientID: String, username: String?, password: String?) async -> Bool {
        var options = h.stack.brokerOptions(clientID: clientID)
        (options.username, options.password) = (username, password)
        return await MQTTTLSTests.connects(options)
    }

    /// `client` stays connected for `duration` (a takeover would drop it at least once).
    static func staysConnected(_ client: MosquittoClient, for duration: Duration = .seconds(2)) async throws -> Bool {
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            if !client.isConnected { return false }
            try await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    @Test func anonymousAndWrongPasswordsAreRefused() async throws {
        try await Harness.with { h in
            let password = try #require(try await h.stack.devicePassword("dev-1"))
            let gateway = try h.ops.serviceAccounts().gateway
            #expect(await Self.connects(h, clientID: "dev-1", username: "dev-1", password: password))
            #expect(!(await Self.connects(h, clientID: "anon-1", username: nil, password: nil)))
            #expect(!(await Self.connects(h, clientID: "dev-1", username: "dev-1", password: nil)))
            #expect(!(await Self.connects(h, clientID: "dev-1", username: "dev-1", password: password + "x")))
            #expect(!(await Self.connects(h, clientID: "x", username: "updraft-gateway", password: password)))
            #expect(!(await Self.connects(h, clientID: "x", username: "updraft-gateway-events", password: gateway.password)))
            #expect(!(await Self.connects(h, clientID: "never-1", username: "never-1", password: password)))
        }
    }

    @Test func aDevicesCredentialsReachOnlyItsOwnTopics() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let victim = try await RawDevice.connect("victim-1", on: h)
            defer { Task { await victim.close() } }
            let spy = try await RawDevice.connect("spy-1", on: h, subscribe: [])
            defer { Task { await spy.close() } }
            for filter in ["updraft/events", "updraft/d/victim-1/#", "updraft/#", "#"] {
                try? await spy.client.subscribe(filter, qos: .atLeastOnce)
            }
            try await victim.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            try await h.waitUntilRegistered(1)
            // As the gateway: a forged offer to the victim, retained, and a forged event.
            try? await spy.client.publish(
                topic: "updraft/d/victim-1/job", payload: Array(#"{"job":"forged"}"#.utf8), qos: .atLeastOnce, retain: true)
            try? await spy.client.publish(topic: "updraft/events", payload: Array(#"{"seq":1}"#.utf8), qos: .atLeastOnce, retain: false)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["victim-1"]), allowDowngrade: false)
            let offer = try #require(try await victim.next("/job"), "the real offer reaches the victim")
            #expect(!String(decoding: offer.payload, as: UTF8.self).contains("forged"))
            #expect(offer.payload.contains(contentsOf: Array(plan.jobs[0].id.rawValue.utf8)))
            // The spy saw none of it: no event, no offer, not its own forgeries.
            #expect(try await spy.next("", timeout: .seconds(1)) == nil)
        }
    }

    @Test func aClientIDCannotBeTakenOver() async throws {
        try await Harness.with { h in
            let gateway = try #require(h.stack.gateway).mqtt.client
            let victim = try await RawDevice.connect("victim-1", on: h)
            defer { Task { await victim.close() } }
            let password = try #require(try await h.stack.devicePassword("thief-1"))
            // The thief names the gateway's client id, then the victim's, with its own account.
            for stolen in [h.stack.configuration.mqtt.clientID, "victim-1"] {
                let (thief, loop) = Self.client(h, clientID: stolen, username: "thief-1", password: password)
                try await thief.connect()
                #expect(try await Self.staysConnected(gateway), "the gateway was disconnected by a client named \(stolen)")
                #expect(victim.client.isConnected, "the victim was disconnected by a client named \(stolen)")
                #expect(thief.isConnected)
                await thief.disconnect()
                loop.shutdown()
            }
            // Without a password the gateway's id gets nothing at all.
            #expect(!(await Self.connects(h, clientID: h.stack.configuration.mqtt.clientID, username: h.stack.configuration.mqtt.username, password: nil)))
            #expect(try await Self.staysConnected(gateway, for: .milliseconds(200)))
        }
    }

    @Test func aProvisionedFleetUpdatesAndAnUnprovisionedDeviceIsNotHeard() async throws {
        try await Harness.with { h in
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 20_000)
            let fleet = try await h.registeredFleet(3)
            // Devices without passwords never connect: the registry never hears of them.
            var config = SimulatorConfig(count: 2, product: "thermo", version: "1.0", trustedKeys: try h.ops.trustedKeys())
            config.useBroker(h.stack.brokerOptions(clientID: "-"))
            config.idPrefix = "unprovisioned-"
            let unprovisioned = try FleetSimulator(config: config, logger: Harness.logger)
            unprovisioned.start()
            _ = try await h.updateEveryDevice(of: fleet, count: 3, to: firmware, image: image)
            #expect(unprovisioned.snapshot().online == 0)
            #expect(try await h.ops.store.devices().allSatisfy { !$0.id.rawValue.hasPrefix("unprovisioned-") })
            await unprovisioned.stop()
            await fleet.stop()
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate func contains(contentsOf needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        return (0...(count - needle.count)).contains { Array(self[$0..<($0 + needle.count)]) == needle }
    }
}
