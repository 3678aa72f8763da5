import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftWire

/// A wire dialect is a value: the gateway, the reference devices and the managed broker's
/// ACL speak another topic layout when handed another dialect, and updates still work.
@Suite(.timeLimit(.minutes(3))) struct DialectEndToEndTests {
    @Test func aFleetSucceedsOverAnotherTopicLayout() async throws {
        try await Harness.with(dialect: FleetOTADialect()) { h in
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 100_000)
            let fleet = try h.fleet(5)
            fleet.start()
            try await fleet.waitUntil(timeout: .seconds(30)) { $0.online == 5 }
            try await h.waitUntilRegistered(5)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
            #expect(plan.jobs.count == 5)
            let jobs = try await h.waitForAllSucceeded(plan.release.id)
            #expect(jobs.allSatisfy { $0.progress == 100 && $0.failure == nil })
            try await fleet.waitForAll(version: "2.0", timeout: .seconds(30))
            for device in fleet.devices {
                #expect(await device.installedImage == image)
            }
            await fleet.stop()
        }
    }

    @Test func theGeneratedACLConfinesDevicesInTheOtherLayout() async throws {
        try await Harness.with(dialect: FleetOTADialect()) { h in
            let acl = try String(contentsOfFile: h.stack.directory + "/broker/mosquitto.acl", encoding: .utf8)
            #expect(acl.contains("topic readwrite fleet/#\ntopic readwrite fleet-events/log\n"))
            #expect(acl.contains("pattern read fleet/%u/ota/chunk/#\npattern write fleet/%u/ota/download\n"))
            #expect(!acl.contains("updraft/"))

            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let spy = try await RawDevice.connect("spy-1", port: h.stack.brokerPort, subscribe: ["fleet-events/log", "fleet/victim-1/ota/#"])
            defer { Task { await spy.close() } }
            let victim = try await RawDevice.connect(
                "victim-1", port: h.stack.brokerPort, subscribe: FleetOTADialect().deviceSubscriptions(of: "victim-1"))
            defer { Task { await victim.close() } }
            try await victim.client.publish(
                topic: "fleet/victim-1/ota/announce", payload: Array(#"{"product":"thermo","version":"1.0"}"#.utf8), qos: .atLeastOnce, retain: false)
            try await h.waitUntilRegistered(1)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["victim-1"]), allowDowngrade: false)
            #expect(plan.jobs.count == 1)
            // The victim gets its offer on its own topic; neither it nor the events reach the spy.
            #expect(try await victim.next("/ota/job") != nil)
            #expect(try await spy.next("", timeout: .seconds(1)) == nil)
        }
    }
}
