import Foundation
import Logging
import Mosquitto
import Synchronization
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport

/// Fleet releases end to end: the real broker, the gateway's planner, simulated devices.
@Suite(.timeLimit(.minutes(3))) struct FleetReleaseTests {
    /// A fleet release of firmware that skips the verification gate (forced), as the
    /// operator would with `--force`.
    func request(_ firmware: Firmware, _ target: FleetTarget, policy: BatchPolicy = BatchPolicy(), rollout: RolloutPolicy = .single) -> FleetReleaseRequest {
        FleetReleaseRequest(firmware: FirmwareRef(firmware), target: target, policy: policy, rollout: rollout, force: true)
    }

    func versions(_ h: Harness) async throws -> [DeviceID: FirmwareVersion] {
        var map: [DeviceID: FirmwareVersion] = [:]
        for device in try await h.ops.store.devices() { map[device.id] = device.version }
        return map
    }

    @Test func aStagedRolloutPausesWhenInjectedFailuresPassTheThreshold() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0")
            let good = try await h.fleet(4, prefix: "ok-")
            // These devices think they run sequence 99: every offer is a rollback to them, refused.
            let bad = try await h.fleet(6, prefix: "bad-") { $0.installedSequence = 99 }
            good.start()
            bad.start()
            try await h.waitUntilRegistered(10)
            let release = try await h.ops.createFleetRelease(
                request(
                    firmware, .productDefault("thermo"), policy: BatchPolicy(membership: .static),
                    rollout: RolloutPolicy(stages: [50, 100], errorThreshold: 0.1, onError: .pause)))
            #expect(release.staticMembers?.count == 10)

            try await eventually(timeout: .seconds(60), "the rollout to pause on errors") {
                if case .paused(.errorThreshold) = try await h.ops.store.fleetRelease(release.id)?.rollout.phase { return true }
                return false
            }
            let jobs = try await h.ops.store.jobs(release: release.id)
            #expect(Set(jobs.map(\.deviceID)).count == 5, "only the first stage's half was admitted")
            #expect(jobs.contains { $0.state == .failed && $0.failure == .rejected })
            let status = try await h.ops.fleetReleaseStatus(release.id)
            #expect(status.counts.pendingRollout >= 5)
            let events = try await h.ops.store.events(after: 0, limit: 10_000)
            #expect(events.contains { $0.kind == .rolloutChanged && $0.releaseID == release.id })
            await good.stop()
            await bad.stop()
        }
    }

    @Test func anOperatorAdvancesAStagedRolloutAcrossAGatewayRestart() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0")
            let fleet = try await h.registeredFleet(4, prefix: "s-")
            let release = try await h.ops.createFleetRelease(
                request(firmware, .productDefault("thermo"), policy: BatchPolicy(membership: .static), rollout: RolloutPolicy(stages: [25, 100])))
            try await h.waitForJobs(release.id) { jobs in jobs.count == 1 && jobs[0].state == .succeeded }

            // State survives a restart: the first stage stays done, the rest wait for the operator.
            await h.stack.stopGateway()
            try await h.stack.startGateway()
            let status = try await h.ops.fleetReleaseStatus(release.id)
            #expect(status.counts.succeeded == 1)
            #expect(status.counts.pendingRollout == 3)

            // `updraft release advance`, written while the gateway runs.
            let change = try await h.ops.command(.advance, release: release.id)
            #expect(change == .advanced(from: 0, to: 1, automatic: false))
            try await h.waitForJobs(release.id) { jobs in jobs.count == 4 && jobs.allSatisfy { $0.state == .succeeded } }
            try await eventually("the static release to complete") {
                try await h.ops.store.fleetRelease(release.id)?.rollout.phase == .completed
            }
            await fleet.stop()
        }
    }

    @Test func aDynamicBatchCatchesADeviceAnnouncingAnOldVersionLater() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0")
            let first = try await h.registeredFleet(3, prefix: "early-")
            let release = try await h.ops.createFleetRelease(request(firmware, .productDefault("thermo")))
            try await first.waitForAll(version: "2.0", timeout: .seconds(60))

            let late = try await h.fleet(1, prefix: "late-")
            late.start()
            try await late.waitForAll(version: "2.0", timeout: .seconds(60))
            let jobs = try await h.waitForJobs(release.id) { jobs in jobs.filter { $0.state == .succeeded }.count == 4 }
            #expect(jobs.contains { $0.deviceID.rawValue.hasPrefix("late-") })
            await late.stop()
            await first.stop()
        }
    }

    @Test func aScheduledReleaseStartsOnTime() async throws {
        try await Harness.with(gateway: false) { h in
            // The gateway's clock: moved forward by hand instead of waiting an hour.
            let offset = Mutex<TimeInterval>(0)
            try await h.stack.startGateway(now: { Date() + offset.withLock { $0 } })
            let (firmware, _) = try await h.addFirmware(version: "2.0")
            let fleet = try await h.registeredFleet(3)
            let start = Date() + 3600
            let release = try await h.ops.createFleetRelease(
                request(firmware, .productDefault("thermo"), policy: BatchPolicy(start: .at(start))))
            let before = try await h.ops.fleetReleaseStatus(release.id)
            #expect(!before.started)
            #expect(before.counts.pendingScheduled == 3)
            #expect(try await h.ops.store.jobs(release: release.id).isEmpty)

            offset.withLock { $0 = 3601 }
            let jobs = try await h.waitForJobs(release.id) { jobs in jobs.count == 3 && jobs.allSatisfy { $0.state == .succeeded } }
            #expect(jobs.allSatisfy { $0.createdAt >= start })
            try await fleet.waitForAll(version: "2.0", timeout: .seconds(30))
            await fleet.stop()
        }
    }

    @Test func aFailedDeviceIsRetried() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0")
            // Its first download gets a corrupted chunk and it gives up at once: the job fails.
            var config = DeviceConfig(
                id: "flaky-0", product: "thermo", version: "1.0", trustedKeys: try h.ops.trustedKeys())
            config.useBroker(h.stack.brokerOptions(clientID: "-"))
            config.password = try await h.stack.devicePassword("flaky-0")
            config.corruptFirstDownload = true
            config.maxVerifyRetries = 0
            config.requestTimeout = .milliseconds(800)
            config.rebootDelay = .milliseconds(100)
            let loop = MosquittoEventLoop(name: "flaky", logger: Harness.logger)
            let device = UpdraftDeviceAgent(config: config, loop: loop, logger: Harness.logger)
            let running = Task { try await device.run() }
            try await h.waitUntilRegistered(1)
            let release = try await h.ops.createFleetRelease(
                request(firmware, .devices(["flaky-0"]), policy: BatchPolicy(retry: RetryPolicy(interval: 0.2, maxRetries: 2))))
            let jobs = try await h.waitForJobs(release.id) { jobs in jobs.last?.state == .succeeded }
            #expect(jobs.count == 2)
            #expect(jobs.first?.state == .failed)
            #expect(jobs.first?.failure == .verify)
            try await eventually("the device to run 2.0") { device.state.version == "2.0" }
            await device.stop()
            _ = await running.result
            loop.shutdown()
        }
    }

    @Test func aVerificationOnATestDeviceOpensTheGateForTheFleet() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0")
            let fleet = try await h.registeredFleet(3, prefix: "v-")
            let unforced = FleetReleaseRequest(firmware: FirmwareRef(firmware), target: .productDefault("thermo"))
            do {
                _ = try await h.ops.createFleetRelease(unforced)
                Issue.record("an unverified firmware was released to the fleet")
            } catch let error as UpdraftError {
                #expect(error.code == "firmware_unverified")
            }
            let verification = try await h.ops.verifyFirmware(firmware.id, devices: ["v-0001"])
            #expect(verification.kind == .verification)
            try await eventually(timeout: .seconds(60), "the test device to verify the firmware") {
                try await h.ops.verification(of: firmware.id).status == .verified
            }
            #expect(try await h.ops.verification(of: firmware.id).verifiedBy == "v-0001")
            let release = try await h.ops.createFleetRelease(unforced)
            #expect(release.forcedFrom == nil)
            try await fleet.waitForAll(version: "2.0", timeout: .seconds(60))
            await fleet.stop()
        }
    }

    @Test func precedenceAcrossOverlappingGroupReleasesAndALock() async throws {
        try await Harness.with { h in
            let (v2, _) = try await h.addFirmware(version: "2.0", seed: 2)
            let (v3, _) = try await h.addFirmware(version: "3.0", seed: 3)
            let fleet = try await h.fleet(4, prefix: "p-")
            try await h.ops.setGroups("p-0000", add: ["alpha"], remove: [])
            try await h.ops.setGroups("p-0001", add: ["alpha", "beta"], remove: [])
            try await h.ops.setGroups("p-0002", add: ["beta"], remove: [])
            // p-0001 is in both groups, but a lock wins over every release.
            try await h.ops.lock("p-0001", to: v2.id, delivery: .now)
            fleet.start()
            try await h.waitUntilRegistered(4)
            _ = try await h.ops.createFleetRelease(request(v2, .groups(["alpha"])))
            _ = try await h.ops.createFleetRelease(request(v3, .groups(["beta"])))

            let expected: [DeviceID: FirmwareVersion] = ["p-0000": "2.0", "p-0001": "2.0", "p-0002": "3.0", "p-0003": "1.0"]
            try await eventually(timeout: .seconds(60), "devices to run what precedence says") {
                let now = try await versions(h)
                return expected.allSatisfy { now[$0.key] == $0.value }
            }
            #expect(try await h.ops.desiredFirmware("p-0003").1 == .none(.noRelease))

            // Unlocked, p-0001 follows its groups: the highest version released to them.
            try await h.ops.unlock("p-0001")
            try await eventually(timeout: .seconds(60), "the unlocked device to take the higher group release") {
                try await versions(h)["p-0001"] == "3.0"
            }
            await fleet.stop()
        }
    }
}
