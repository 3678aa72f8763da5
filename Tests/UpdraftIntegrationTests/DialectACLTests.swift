import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftWire

/// The managed broker's ACL follows the dialect it is given (the update itself over that
/// dialect is in ``EndToEndTests``).
@Suite(.timeLimit(.minutes(3))) struct DialectACLTests {
    @Test func theGeneratedACLConfinesDevicesInTheOtherLayout() async throws {
        try await Harness.with(dialect: LayoutDialect.fleetOTA) { h in
            let acl = try String(contentsOfFile: h.stack.directory + "/broker/mosquitto.acl", encoding: .utf8)
            #expect(acl.contains("topic readwrite fleet/#\ntopic readwrite fleet-events/log\n"))
            #expect(acl.contains("pattern read fleet/%u/ota/chunk/#\npattern write fleet/%u/ota/download\n"))
            #expect(!acl.contains("updraft/"))

            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let spy = try await RawDevice.connect("spy-1", on: h, subscribe: ["fleet-events/log", "fleet/victim-1/ota/#"])
            defer { Task { await spy.close() } }
            let victim = try await RawDevice.connect(
                "victim-1", on: h, subscribe: LayoutDialect.fleetOTA.deviceSubscriptions(of: "victim-1"))
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
