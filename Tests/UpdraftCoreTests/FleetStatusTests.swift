import Foundation
import Testing
@testable import UpdraftCore

@Suite struct FleetStatusTests {
    @Test func countsEveryState() throws {
        let h = FleetHarness()
        h.addDevice("offline")
        h.addDevice("busy", online: true, accepts: false)
        h.addDevice("waiting")
        h.addDevice("notified", online: true)
        h.addDevice("downloading", online: true)
        h.addDevice("installing", online: true)
        h.addDevice("done", online: true)
        h.addDevice("broken", online: true)
        h.addDevice("retrying", online: true)
        h.addDevice("current", version: "2.0")
        h.addDevice("newer", version: "3.0")
        h.addDevice("other", version: "1.0", groups: ["lab"])
        h.addDevice("occupied", online: true)
        let legacy = Job(id: "jlegacy", releaseID: "rlegacy", deviceID: "occupied", firmwareID: "thermo@4.0", targetVersion: "4.0", createdAt: h.now)
        h.jobs[legacy.id] = legacy
        h.release("3.0", to: .groups(["lab"]), id: "rlab")
        let r = h.release("2.0", policy: BatchPolicy(retry: RetryPolicy(interval: 600, maxRetries: 1)), id: "rmain")
        h.tick()
        // Came online since the tick: its offer goes out with the next one.
        h.devices["waiting"]!.device.online = true
        h.report("downloading", .downloading(percent: 40))
        for step: DeviceReport in [.downloading(percent: 100), .downloaded, .verified, .installing] { h.report("installing", step) }
        h.succeed("done")
        h.fail("broken", .rejected)
        h.fail("retrying", .verify)

        let status = try #require(FleetStatus.release(r, fleet: h.snapshot, at: h.now))
        let states = Dictionary(uniqueKeysWithValues: status.devices.map { ($0.device, $0.state) })
        #expect(states["offline"] == .pendingOffline)
        #expect(states["busy"] == .pendingConsent)
        #expect(states["waiting"] == .pendingDelivery)
        #expect(states["notified"] == .notified)
        #expect(states["downloading"] == .updating(.downloading, percent: 40))
        #expect(states["installing"] == .updating(.installing, percent: 100))
        #expect(states["done"] == .succeeded)
        #expect(states["broken"] == .failed(.rejected))
        #expect(states["retrying"] == .pendingRetry(at: h.now + 600))
        #expect(states["current"] == .upToDate)
        #expect(states["newer"] == .skippedDowngrade)
        #expect(states["occupied"] == .pendingBusy)
        #expect(states["other"] == nil, "claimed by the group release")

        let c = status.counts
        #expect(c.pendingOffline == 1 && c.pendingConsent == 1 && c.pendingDelivery == 1 && c.pendingBusy == 1 && c.pendingRetry == 1)
        #expect(c.notified == 1 && c.updating == 2 && c.succeeded == 1 && c.upToDate == 1 && c.failed == 1 && c.skippedDowngrade == 1)
        #expect(c.failedByReason == ["rejected": 1])
        #expect(c.updatingPercent == 70)
        #expect(c.pending == 5)
        #expect(c.total == 12)
        #expect(status.firmware.version == "2.0")
        #expect(status.started)
        #expect(!status.forced)
        #expect(status.devices.first { $0.device == "retrying" }?.attempts == 1)
    }

    @Test func scheduledAndRolloutPending() throws {
        let h = FleetHarness()
        h.addDevices(10)
        let later = h.release("2.0", policy: BatchPolicy(start: .at(h.now + 3600)))
        let before = try #require(FleetStatus.release(later, fleet: h.snapshot, at: h.now))
        #expect(before.counts.pendingScheduled == 10)
        #expect(!before.started)

        let s = FleetHarness()
        s.addDevices(10)
        let staged = s.release("2.0", rollout: RolloutPolicy(stages: [20, 100]))
        s.tick()
        let status = try #require(FleetStatus.release(staged, fleet: s.snapshot, at: s.now))
        #expect(status.counts.pendingOffline == 2)
        #expect(status.counts.pendingRollout == 8)
        #expect(status.stagePercent == 20)
        #expect(status.phase == .running)
    }

    @Test func canceledJobsShowAsCanceledOnceTheDeviceMovedOn() throws {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"])
        let old = h.release("2.0")
        h.tick()
        h.release("3.0", to: .groups(["lab"]))
        h.tick()
        let status = try #require(FleetStatus.release(old, fleet: h.snapshot, at: h.now))
        #expect(status.devices.map(\.state) == [.canceled])
        #expect(status.counts.canceled == 1)
    }

    @Test func unknownReleaseHasNoStatus() {
        let h = FleetHarness()
        #expect(FleetStatus.release("rnone", fleet: h.snapshot, at: h.now) == nil)
    }

    // MARK: Version distribution

    @Test func topFivePlusOthers() {
        var devices: [Device] = []
        let spread: [(FirmwareVersion, Int)] = [("1.0", 40), ("1.1", 25), ("1.2", 12), ("1.3", 8), ("1.4", 5), ("0.9", 4), ("0.8", 3), ("0.7", 1)]
        for (version, count) in spread {
            for n in 0..<count { devices.append(Device(id: DeviceID(unchecked: "\(version.rawValue)-\(n)"), product: "thermo", version: version)) }
        }
        devices.append(Device(id: "silent", product: "thermo"))
        devices.append(Device(id: "lamp", product: "lamp", version: "1.0"))
        devices.append(Device(id: "new"))
        let d = FleetStatus.versionDistribution(product: "thermo", devices: devices)
        #expect(d.total == 99)
        #expect(d.top.map(\.version) == ["1.0", "1.1", "1.2", "1.3", "1.4"])
        #expect(d.top.map(\.devices) == [40, 25, 12, 8, 5])
        #expect(d.others == 8)
        #expect(d.unknown == 1)
        #expect(abs(d.top[0].fraction - 40.0 / 99) < 1e-9)
        #expect(abs(d.othersFraction - 8.0 / 99) < 1e-9)
        #expect(d.top.map(\.devices).reduce(0, +) + d.others + d.unknown == d.total)
    }

    @Test func tiesPreferNewerVersionsThenNames() {
        let devices = ["a": "1.0", "b": "2.0", "c": "3.0"].map { Device(id: DeviceID(unchecked: $0.key), product: "thermo", version: FirmwareVersion(unchecked: $0.value)) }
        let byName = FleetStatus.versionDistribution(product: "thermo", devices: devices, top: 2)
        #expect(byName.top.map(\.version) == ["1.0", "2.0"])
        #expect(byName.others == 1)
        let bySequence = FleetStatus.versionDistribution(product: "thermo", devices: devices, top: 2) { FleetHarness.catalog[$0] }
        #expect(bySequence.top.map(\.version) == ["3.0", "2.0"])
    }

    @Test func fewerVersionsThanTheTopAndEmptyProducts() {
        let d = FleetStatus.versionDistribution(product: "thermo", devices: [Device(id: "a", product: "thermo", version: "1.0")])
        #expect(d.top.count == 1 && d.others == 0 && d.othersFraction == 0)
        let empty = FleetStatus.versionDistribution(product: "none", devices: [])
        #expect(empty.total == 0 && empty.top.isEmpty)
        let all = FleetStatus.versionDistributions(devices: [Device(id: "a", product: "thermo", version: "1.0"), Device(id: "b", product: "lamp", version: "2")])
        #expect(all.map(\.product) == ["lamp", "thermo"])
    }

    @Test func statusRoundTripsThroughJSON() throws {
        let h = FleetHarness()
        h.addDevice("a", online: true)
        let r = h.release("2.0")
        h.tick()
        h.report("a", .downloading(percent: 10))
        let status = try #require(FleetStatus.release(r, fleet: h.snapshot, at: h.now))
        #expect(try JSONDecoder().decode(ReleaseStatus.self, from: JSONEncoder().encode(status)) == status)
    }
}
