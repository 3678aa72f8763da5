import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftWire
import UpdraftTestSupport

@Suite(.timeLimit(.minutes(3))) struct EndToEndTests {
    /// nil: today's dialect; then a dialect with another topic layout, which the gateway,
    /// the devices and the generated broker ACL all speak.
    @Test(arguments: [nil, .fleetOTA] as [LayoutDialect?])
    func everyDeviceSucceedsAndTheEventLogTellsTheWholeStory(dialect: LayoutDialect?) async throws {
        try await Harness.with(dialect: dialect) { h in
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 200_000)
            let fleet = try await h.fleet(20)
            try await h.start(fleet, online: 20)
            try await eventually("the gateway to register every device") {
                try await h.ops.store.devices().filter { $0.product == "thermo" && $0.online }.count == 20
            }
            let (plan, jobs) = try await h.updateEveryDevice(of: fleet, count: 20, to: firmware, image: image)
            await fleet.stop()

            // Gap-free log with the full path of every job.
            let events = try await h.ops.store.events(after: 0, limit: 100_000)
            #expect(events.map(\.sequence) == Array(1...Int64(events.count)))
            h.expectEveryJobTookTheWholePath(jobs, events: events)
            #expect(events.contains { $0.kind == .releaseCreated && $0.releaseID == plan.release.id })
            #expect(events.filter { $0.kind == .jobCreated }.count == 20)

            // The device registry knows the new version; a second release has nothing to do.
            let again = try await h.ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
            #expect(again.jobs.isEmpty)
            #expect(again.skipped.allSatisfy { $0.1 == .alreadyOnTarget })
        }
    }

    @Test func offlineDevicesGetTheirJobWhenTheyComeBack() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0")
            let fleet = try await h.fleet(10) { $0.offlineFraction = 0.4 }
            try await h.releaseWithDevicesOffline(firmware, to: fleet, offline: 4)
            await fleet.stop()
        }
    }

    @Test func downloadsResumeAfterADisconnectWithoutStartingOver() async throws {
        try await Harness.with { h in
            let size = 256 * 1024
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: size)
            let fleet = try await h.fleet(6) {
                $0.disconnectFraction = 1
                $0.disconnectAtPercent = 50
                $0.chunkSize = 1024
            }
            try await h.start(fleet, online: 6)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(fleet.devices.map(\.id)), allowDowngrade: false)
            try await h.waitForAllSucceeded(plan.release.id)
            let snapshot = fleet.snapshot()
            #expect(snapshot.resumes >= 6)
            // Resumed, not restarted: well under two images per device.
            #expect(snapshot.bytesReceived < 6 * size * 3 / 2)
            await fleet.stop()
        }
    }

    @Test func corruptedDownloadsAreCaughtByTheDigestAndDownloadedAgain() async throws {
        try await Harness.with { h in
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 50_000)
            let fleet = try await h.fleet(4) { $0.corruptFraction = 1 }
            try await h.start(fleet, online: 4)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
            try await h.waitForAllSucceeded(plan.release.id)
            #expect(fleet.snapshot().verifyRetries >= 4)
            for device in fleet.devices { #expect(await device.installedImage == image) }
            await fleet.stop()
        }
    }

    @Test func gatewayRestartMidReleaseLosesNothing() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 400_000)
            let fleet = try await h.fleet(10) { $0.chunkSize = 512; $0.windowCount = 4 }
            try await h.start(fleet, online: 10)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
            #expect(plan.jobs.count == 10)
            try await h.waitForJobs(plan.release.id) { jobs in jobs.contains { $0.state == .downloading } }
            await h.stack.stopGateway()

            // While no gateway runs, the CLI still works: a new device is released to.
            let late = try await h.fleet(1, prefix: "late-")
            let latePlan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["late-0000"]), allowDowngrade: false)
            try await Task.sleep(for: .milliseconds(500))
            try await h.stack.startGateway()
            late.start()
            try await h.waitForAllSucceeded(plan.release.id)
            try await h.waitForAllSucceeded(latePlan.release.id)
            await fleet.stop()
            await late.stop()
        }
    }

    @Test func aDeviceHasAtMostOneActiveJob() async throws {
        try await Harness.with(gateway: false) { h in
            let (v2, _) = try await h.addFirmware(version: "2.0")
            let (v3, _) = try await h.addFirmware(version: "3.0", seed: 2)
            let first = try await h.ops.createRelease(firmwareID: v2.id, target: .devices(["d1", "d2"]), allowDowngrade: false)
            #expect(first.jobs.count == 2)
            let second = try await h.ops.createRelease(firmwareID: v3.id, target: .devices(["d1", "d3"]), allowDowngrade: false)
            #expect(second.jobs.map(\.deviceID) == ["d3"])
            #expect(second.skipped.map(\.0) == ["d1"])
        }
    }
}
