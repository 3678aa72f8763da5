import Foundation
import Testing
import UpdraftCore

/// Fleet state behaviours every `StatusStore` must have (run from ``StoreContract/checks``).
package enum FleetStoreContract {
    package static let checks: [StoreContractCheck] = [
        StoreContractCheck("fleet releases round-trip, with a releases row their jobs can refer to", fleetReleaseRoundTrip),
        StoreContractCheck("fleet releases are not listed by releases()", fleetReleasesApart),
        StoreContractCheck("updateFleetRelease changes the release and appends events in one transaction", fleetReleaseUpdate),
        StoreContractCheck("updateFleetRelease of an unknown release throws release_not_found", fleetReleaseUnknown),
        StoreContractCheck("updateFleetProfile stores a lock and its release together", fleetLock),
        StoreContractCheck("a throwing update writes nothing", fleetUpdateRollsBack),
        StoreContractCheck("commit leaves a fleet release alone when it changed since the writer's base", fleetReleaseBase),
        StoreContractCheck("job activity and planner state round-trip; ended jobs drop their activity", activityRoundTrip),
        StoreContractCheck("verification round-trips through updateVerification and commit", verificationRoundTrip),
    ]

    static func ref(_ firmware: Firmware) -> FirmwareRef { FirmwareRef(firmware) }

    static func fleetReleaseRoundTrip(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "2").firmware
        let release = FleetRelease(
            firmware: ref(firmware), target: .groups(["lab"]),
            policy: BatchPolicy(sourceVersions: ["1"], retry: RetryPolicy(interval: 30, maxRetries: 2), deviceTimeout: 600),
            rollout: RolloutPolicy(stages: [10, 100], successThreshold: 0.9, errorThreshold: 0.2), createdAt: t0)
        let event = UpdraftEvent(kind: .releaseCreated, time: t0, releaseID: release.id, firmwareID: firmware.id)
        try await store.commit(StoreBatch(events: [event], fleetReleases: [release]))
        #expect(try await store.fleetReleases() == [release])
        #expect(try await store.fleetRelease(release.id) == release)

        // Its jobs refer to it, on a device the release never named.
        let job = Job(releaseID: release.id, deviceID: "d1", firmwareID: firmware.id, targetVersion: "2", createdAt: t0 + 1)
        try await store.commit(StoreBatch(devices: [Device(id: "d1", product: "p", version: "1")], jobs: [job]))
        #expect(try await store.jobs(release: release.id) == [job])

        // A device release names devices the registry did not know.
        let named = FleetRelease(firmware: ref(firmware), target: .devices(["never-seen"]), createdAt: t0 + 2)
        try await store.commit(StoreBatch(fleetReleases: [named]))
        #expect(try await store.device("never-seen") != nil)
        #expect(try await store.fleetReleases().map(\.id) == [release.id, named.id])
    }

    static func fleetReleasesApart(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "2").firmware
        try await store.commit(StoreBatch(fleetReleases: [FleetRelease(firmware: ref(firmware), target: .productDefault("p"), createdAt: t0)]))
        #expect(try await store.releases().isEmpty)
    }

    static func fleetReleaseUpdate(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "2").firmware
        let release = FleetRelease(firmware: ref(firmware), target: .productDefault("p"), createdAt: t0)
        try await store.commit(StoreBatch(fleetReleases: [release]))
        let before = try await store.lastEventSequence()
        let updated = try await store.updateFleetRelease(release.id) { release in
            _ = try release.apply(.pause, at: t0 + 5)
            return [UpdraftEvent(kind: .fleetCommand, time: t0 + 5, releaseID: release.id, detail: "pause")]
        }
        #expect(updated.rollout.phase == .paused(.operatorRequest))
        #expect(try await store.fleetRelease(release.id)?.rollout.phase == .paused(.operatorRequest))
        let events = try await store.events(after: before, limit: 10)
        #expect(events.map(\.kind) == [.fleetCommand])

        // Seen by another instance on the same database (the gateway next to the CLI).
        let other = try await fixture.openAnother()
        #expect(try await other.fleetRelease(release.id)?.rollout.phase == .paused(.operatorRequest))
    }

    static func fleetReleaseUnknown(_ fixture: any StoreFixture) async throws {
        do {
            try await fixture.store.updateFleetRelease("nope") { _ in [] }
            Issue.record("expected release_not_found")
        } catch let error as UpdraftError {
            #expect(error.code == "release_not_found")
        }
    }

    static func fleetLock(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "2").firmware
        let profile = try await store.updateFleetProfile("d9") { profile in
            let (release, lock) = FleetRelease.lock(device: "d9", firmware: ref(firmware), delivery: .now, now: t0)
            profile.lock = lock
            profile.add(to: "lab")
            return StoreBatch(events: [UpdraftEvent(kind: .fleetCommand, time: t0, deviceID: "d9", releaseID: release.id)], fleetReleases: [release])
        }
        let stored = try #require(try await store.fleetProfiles()["d9"])
        #expect(stored == profile)
        #expect(stored.groups == ["lab"])
        let lockID = try #require(stored.lock).releaseID
        let lockRelease = try #require(try await store.fleetRelease(lockID))
        #expect(lockRelease.kind == .lock)
        #expect(try await store.device("d9") != nil)

        let unlocked = try await store.updateFleetProfile("d9") { profile in
            profile.unlock()
            return StoreBatch()
        }
        #expect(unlocked.lock == nil)
        #expect(try await store.fleetProfiles()["d9"]?.lock == nil)
    }

    static func fleetUpdateRollsBack(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let before = try await store.lastEventSequence()
        await #expect(throws: UpdraftError.self) {
            try await store.updateFleetProfile("d1") { profile in
                profile.isDevelopment = true
                throw UpdraftError("nope", "refused")
            }
        }
        #expect(try await store.fleetProfiles().isEmpty)
        #expect(try await store.lastEventSequence() == before)
    }

    static func fleetReleaseBase(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "2").firmware
        // Fractional seconds, as a real clock gives them.
        let created = Date(timeIntervalSince1970: 1_700_000_123.456_789)
        let base = FleetRelease(firmware: ref(firmware), target: .productDefault("p"), rollout: RolloutPolicy(stages: [10, 100]), createdAt: created)
        try await store.commit(StoreBatch(fleetReleases: [base]))
        #expect(try await store.fleetRelease(base.id) == base, "a release reads back equal to what was written")

        // The gateway's change, on top of what it read: written.
        var advanced = base
        _ = try advanced.apply(.advance, at: created + 0.25)
        try await store.commit(StoreBatch(fleetReleases: [advanced], fleetReleaseBases: [base.id: base]))
        #expect(try await store.fleetRelease(base.id) == advanced)

        // An operator pauses it; the gateway then writes a change made on the old base: the pause stays.
        try await store.updateFleetRelease(base.id) { release in
            _ = try release.apply(.pause, at: created + 1)
            return []
        }
        var stale = advanced
        _ = try stale.apply(.cancel, at: created + 2)
        let events = try await store.commit(
            StoreBatch(events: [UpdraftEvent(kind: .rolloutChanged, time: created + 2, releaseID: base.id)], fleetReleases: [stale], fleetReleaseBases: [base.id: advanced]))
        #expect(events.count == 1)
        #expect(try await store.fleetRelease(base.id)?.rollout.phase == .paused(.operatorRequest))
    }

    static func activityRoundTrip(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "2").firmware
        let release = FleetRelease(firmware: ref(firmware), target: .productDefault("p"), createdAt: t0)
        var job = Job(releaseID: release.id, deviceID: "d1", firmwareID: firmware.id, targetVersion: "2", createdAt: t0)
        var activity = JobActivity()
        activity.offered(at: t0 + 1)
        activity.progressed(at: t0 + 2)
        var planner = FleetPlanner(stallAfter: 30)
        _ = planner.tick(at: t0, fleet: FleetSnapshot(devices: [], releases: []))
        try await store.commit(
            StoreBatch(
                devices: [Device(id: "d1")], jobs: [job], fleetReleases: [release], activity: [job.id: activity], plannerState: planner))
        #expect(try await store.jobActivity() == [job.id: activity])
        #expect(try await store.plannerState() == planner)

        job.state = .succeeded
        try await store.commit(StoreBatch(jobs: [job]))
        #expect(try await store.jobActivity().isEmpty)
    }

    static func verificationRoundTrip(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "2").firmware
        #expect(try await store.verification(firmwareID: firmware.id) == nil)
        let release: ReleaseID = "verify-1"
        let verification = try await store.updateVerification(firmwareID: firmware.id) { verification in
            _ = try verification.start(release: release, devices: ["d1"], at: t0)
            return StoreBatch(
                fleetReleases: [FleetRelease(id: release, kind: .verification, firmware: ref(firmware), target: .devices(["d1"]), createdAt: t0)])
        }
        #expect(verification.status == .verifying)
        #expect(try await store.verification(firmwareID: firmware.id) == verification)
        var verified = verification
        _ = verified.deviceSucceeded("d1", at: t0 + 9)
        try await store.commit(StoreBatch(verifications: [verified]))
        #expect(try await store.verifications() == [verified])
        await #expect(throws: UpdraftError.self) {
            try await store.updateVerification(firmwareID: "p@404") { _ in StoreBatch() }
        }
    }
}
