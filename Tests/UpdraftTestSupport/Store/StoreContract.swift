import Foundation
import Synchronization
import Testing
import UpdraftCore

/// A store under test: empty when handed to a check, on a database of its own.
///
/// A PostgreSQL store reuses ``StoreContract`` by providing its own fixture (a fresh
/// schema per check) and running `StoreContract.checks` as a parameterised test.
package protocol StoreFixture: Sendable {
    var store: any StatusStore { get }
    /// Another store instance on the same database, as the CLI is next to a running gateway.
    func openAnother() async throws -> any StatusStore
}

/// One behaviour every `StatusStore` must have.
package struct StoreContractCheck: Sendable, CustomTestStringConvertible {
    package let name: String
    package let run: @Sendable (any StoreFixture) async throws -> Void

    package init(_ name: String, _ run: @escaping @Sendable (any StoreFixture) async throws -> Void) {
        self.name = name
        self.run = run
    }

    package var testDescription: String { name }
}

package enum StoreContract {
    package static let checks: [StoreContractCheck] = [
        StoreContractCheck("empty store", emptyStore),
        StoreContractCheck("addFirmware numbers versions 1, 2, 3 per product", firmwareSequences),
        StoreContractCheck("addFirmware keeps a higher sequence signed elsewhere and refuses a lower one", firmwareSignedSequence),
        StoreContractCheck("addFirmware of the same content returns the existing entry", firmwareExisting),
        StoreContractCheck("addFirmware with other content throws firmware_conflict", firmwareConflict),
        StoreContractCheck("addFirmware appends firmware.added", firmwareEvent),
        StoreContractCheck("createRelease skips on-target, other-product, active-job and downgrade devices", releaseSkips),
        StoreContractCheck("createRelease to a product targets only its devices", releaseProductTarget),
        StoreContractCheck("createRelease gives unknown devices a job and a registry row", releaseUnknownDevices),
        StoreContractCheck("createRelease appends release.created and one job.created per job", releaseEvents),
        StoreContractCheck("createRelease of firmware not in the catalog throws firmware_not_found", releaseUnknownFirmware),
        StoreContractCheck("releases newest first, jobs by release, active jobs", releaseQueries),
        StoreContractCheck("jobCounts counts the jobs in the states asked for", jobCounts),
        StoreContractCheck("one active job per device, even through commit", oneActiveJobPerDevice),
        StoreContractCheck("commit ends a job and starts the next in one batch", commitReplacesActiveJob),
        StoreContractCheck("commit upserts devices and jobs and numbers events gap-free", commitUpserts),
        StoreContractCheck("commitIsolatingRefusals leaves out a refused job and writes the rest", commitIsolatesRefusedJob),
        StoreContractCheck("event cursors are saved per name and only move forward", eventCursors),
        StoreContractCheck("events(after:through:kinds:) reads only those kinds in the range", eventsOfKinds),
        StoreContractCheck("events(after:limit:) pages in order", eventPaging),
        StoreContractCheck("dates round-trip to the millisecond", dateRoundTrip),
        StoreContractCheck("a second store instance sees committed writes", secondInstanceSees),
        StoreContractCheck("two instances writing concurrently keep the event log gap-free", concurrentWriters),
    ] + FleetStoreContract.checks + TokenStoreContract.checks + WebhookStoreContract.checks + operatorChecks

    /// Adds p@`version` and releases it to `devices` at t0.
    static func released(
        _ store: any StatusStore, _ version: FirmwareVersion, to devices: [DeviceID]
    ) async throws -> (Firmware, ReleasePlan) {
        let target = try await addFirmware(store, "p", version).firmware
        let plan = try await store.createRelease(
            Release(firmwareID: target.id, target: .devices(devices), createdAt: t0), firmware: target)
        return (target, plan)
    }

    // MARK: Catalog

    static func emptyStore(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        #expect(try await store.lastEventSequence() == 0)
        #expect(try await store.events(after: 0, limit: 100).isEmpty)
        #expect(try await store.firmwareList(product: nil).isEmpty)
        #expect(try await store.devices().isEmpty)
        #expect(try await store.releases().isEmpty)
        #expect(try await store.activeJobs().isEmpty)
        #expect(try await store.firmware(id: "p@1") == nil)
        #expect(try await store.device("d1") == nil)
        #expect(try await store.job("j1") == nil)
    }

    static func firmwareSequences(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        for (product, version) in [("alpha", "1.0"), ("beta", "1.0"), ("alpha", "1.1"), ("alpha", "2.0"), ("beta", "0.9")] {
            let result = try await addFirmware(store, ProductID(unchecked: product), FirmwareVersion(unchecked: version))
            guard case .added = result else {
                Issue.record("expected .added for \(product)@\(version), got \(result)")
                return
            }
        }
        let alpha = try await store.firmwareList(product: "alpha")
        #expect(alpha.map(\.version.rawValue) == ["1.0", "1.1", "2.0"])
        #expect(alpha.map(\.sequence) == [1, 2, 3])
        let beta = try await store.firmwareList(product: "beta")
        #expect(beta.map(\.version.rawValue) == ["1.0", "0.9"])
        #expect(beta.map(\.sequence) == [1, 2])
        #expect(try await store.firmwareList(product: nil).count == 5)
        #expect(try await store.firmwareList(product: "gamma").isEmpty)

        let stored = try #require(try await store.firmware(id: "alpha@1.1"))
        #expect(stored == alpha[1])
        #expect(stored.manifest == alpha[1].manifest)
    }

    static func firmwareSignedSequence(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        _ = try await addFirmware(store, "p", "1")
        // A manifest signed on another machine carries its own (higher) sequence.
        let signed = try await store.addFirmware(product: "p", version: "2", sha256: sha("p@2")) { _ in
            try makeFirmware("p", "2", sequence: 1_000)
        }
        #expect(signed.firmware.sequence == 1_000)
        #expect(try await addFirmware(store, "p", "3").firmware.sequence == 1_001)
        await #expect(throws: UpdraftError.self) {
            try await store.addFirmware(product: "p", version: "4", sha256: sha("p@4")) { sequence in
                try makeFirmware("p", "4", sequence: sequence - 1)
            }
        }
        #expect(try await store.firmwareList(product: "p").map(\.version.rawValue) == ["1", "2", "3"])
    }

    static func firmwareExisting(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let first = try await addFirmware(store, "p", "1.0", content: "image")
        let calls = Counter()
        let again = try await store.addFirmware(product: "p", version: "1.0", sha256: sha("image")) { sequence in
            calls.increment()
            return try makeFirmware("p", "1.0", sequence: sequence, content: "image")
        }
        #expect(again == .existing(first.firmware))
        #expect(calls.value == 0, "make must not run for an existing firmware")
        #expect(try await store.lastEventSequence() == 1, "no second firmware.added")
        #expect(try await store.firmwareList(product: "p").count == 1)
    }

    static func firmwareConflict(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        _ = try await addFirmware(store, "p", "1.0", content: "one")
        let error = await #expect(throws: UpdraftError.self) {
            try await addFirmware(store, "p", "1.0", content: "two")
        }
        #expect(error?.code == "firmware_conflict")
        #expect(error?.message.contains("p@1.0 already exists with other content") == true)
        #expect(error?.message.contains("versions are immutable") == true)
        #expect(try await store.firmware(id: "p@1.0")?.sha256 == sha("one"))
        // A failed add leaves no trace and does not use up a sequence number.
        #expect(try await store.lastEventSequence() == 1)
        #expect(try await addFirmware(store, "p", "1.1", content: "two").firmware.sequence == 2)
    }

    static func firmwareEvent(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let added = try await addFirmware(store, "p", "1.0").firmware
        let events = try await store.events(after: 0, limit: 10)
        #expect(events.count == 1)
        #expect(events.first?.kind == .firmwareAdded)
        #expect(events.first?.firmwareID == "p@1.0")
        #expect(events.first?.sequence == 1)
        #expect(events.first?.time == added.createdAt)
    }

    // MARK: Releases

    static func releaseSkips(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        for version in ["1", "2", "3"] { _ = try await addFirmware(store, "p", FirmwareVersion(unchecked: version)) }
        _ = try await addFirmware(store, "q", "1")
        let target = try #require(try await store.firmware(id: "p@2"))
        try await store.commit(
            StoreBatch(devices: [
                Device(id: "on-target", product: "p", version: "2", online: true),
                Device(id: "other-product", product: "q", version: "1"),
                Device(id: "newer", product: "p", version: "3"),
                Device(id: "older", product: "p", version: "1"),
                Device(id: "busy", product: "p", version: "1"),
            ]))
        let earlier = try await store.createRelease(
            Release(firmwareID: target.id, target: .devices(["busy"]), createdAt: t0), firmware: target)
        let busyJob = try #require(earlier.jobs.first)

        let plan = try await store.createRelease(
            Release(
                firmwareID: target.id, target: .devices(["on-target", "other-product", "newer", "older", "busy"]),
                createdAt: t0 + 60),
            firmware: target)
        #expect(plan.jobs.map(\.deviceID) == ["older"])
        #expect(plan.jobs.first?.targetVersion == "2")
        #expect(plan.jobs.first?.state == .queued)
        let skipped = Dictionary(uniqueKeysWithValues: plan.skipped.map { ($0.0.rawValue, $0.1) })
        #expect(skipped["on-target"] == .alreadyOnTarget)
        #expect(skipped["other-product"] == .otherProduct("q"))
        #expect(skipped["newer"] == .downgrade(from: "3"))
        #expect(skipped["busy"] == .hasActiveJob(busyJob.id))
        #expect(plan.unknownDevices.isEmpty)

        let downgrade = try await store.createRelease(
            Release(
                firmwareID: target.id, target: .devices(["newer", "older"]), allowDowngrade: true, createdAt: t0 + 120),
            firmware: target)
        #expect(downgrade.jobs.map(\.deviceID) == ["newer"])
        #expect(downgrade.skipped.map(\.1) == [.hasActiveJob(plan.jobs[0].id)])
        #expect(Set(try await store.activeJobs().map(\.deviceID)) == ["busy", "older", "newer"])
    }

    static func releaseProductTarget(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        _ = try await addFirmware(store, "p", "1")
        let target = try await addFirmware(store, "p", "2").firmware
        try await store.commit(
            StoreBatch(devices: [
                Device(id: "p-b", product: "p", version: "1"),
                Device(id: "p-a", product: "p", version: "1"),
                Device(id: "q-c", product: "q", version: "1"),
                Device(id: "unannounced"),
            ]))
        let plan = try await store.createRelease(
            Release(firmwareID: target.id, target: .product("p"), createdAt: t0), firmware: target)
        #expect(plan.jobs.map(\.deviceID) == ["p-a", "p-b"])
        #expect(plan.skipped.isEmpty)
        #expect(plan.unknownDevices.isEmpty)
        #expect(try await store.jobs(release: plan.release.id).map(\.deviceID).sorted() == ["p-a", "p-b"])
    }

    static func releaseUnknownDevices(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let target = try await addFirmware(store, "p", "1").firmware
        try await store.commit(StoreBatch(devices: [Device(id: "known", product: "p", version: "0")]))
        let plan = try await store.createRelease(
            Release(firmwareID: target.id, target: .devices(["ghost", "known", "ghost"]), createdAt: t0),
            firmware: target)
        #expect(plan.unknownDevices == ["ghost"])
        #expect(plan.jobs.map(\.deviceID) == ["ghost", "known"])
        #expect(try await store.device("ghost") == Device(id: "ghost"))
        #expect(try await store.devices().map(\.id) == ["ghost", "known"])
        let ghostJob = try #require(plan.jobs.first)
        #expect(try await store.job(ghostJob.id) == ghostJob)
    }

    static func releaseEvents(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let target = try await addFirmware(store, "p", "1").firmware
        try await store.commit(StoreBatch(devices: [Device(id: "d1", product: "p", version: "0"), Device(id: "d2", product: "p", version: "1")]))
        let before = try await store.lastEventSequence()
        let release = Release(firmwareID: target.id, target: .devices(["d1", "d2", "d3"]), createdAt: t0 + 5)
        let plan = try await store.createRelease(release, firmware: target)
        #expect(plan.jobs.map(\.deviceID) == ["d1", "d3"])

        let events = try await store.events(after: before, limit: 100)
        #expect(events.map(\.sequence) == Array((before + 1)...(before + 3)))
        #expect(events.map(\.kind) == [.releaseCreated, .jobCreated, .jobCreated])
        #expect(events[0].releaseID == release.id)
        #expect(events[0].firmwareID == target.id)
        #expect(events[0].detail?.contains("2 jobs") == true)
        #expect(events[0].time == release.createdAt)
        #expect(Array(events.dropFirst()) == plan.jobs.enumerated().map { index, job in
            var event = UpdraftEvent.job(.jobCreated, job, time: release.createdAt)
            event.sequence = before + 2 + Int64(index)
            return event
        })
    }

    static func releaseUnknownFirmware(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let ghost = try makeFirmware("p", "9", sequence: 9)
        let error = await #expect(throws: UpdraftError.self) {
            try await store.createRelease(
                Release(firmwareID: ghost.id, target: .devices(["d1"]), createdAt: t0), firmware: ghost)
        }
        #expect(error?.code == "firmware_not_found")
        #expect(try await store.releases().isEmpty)
        #expect(try await store.devices().isEmpty, "a failed release must not register devices")
        #expect(try await store.lastEventSequence() == 0)
    }

    static func releaseQueries(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let v1 = try await addFirmware(store, "p", "1").firmware
        let v2 = try await addFirmware(store, "p", "2").firmware
        let first = try await store.createRelease(
            Release(firmwareID: v1.id, target: .devices(["a", "b"]), createdAt: t0), firmware: v1)
        var done = first.jobs[0]
        done.state = .succeeded
        done.progress = 100
        done.updatedAt = t0 + 30
        try await store.commit(StoreBatch(jobs: [done]))
        let second = try await store.createRelease(
            Release(firmwareID: v2.id, target: .devices(["a", "c"]), allowDowngrade: true, createdAt: t0 + 60),
            firmware: v2)

        #expect(try await store.releases() == [second.release, first.release])
        #expect(try await store.jobs(release: first.release.id) == [done, first.jobs[1]])
        #expect(try await store.jobs(release: second.release.id) == second.jobs)
        #expect(try await store.jobs(release: "r-none").isEmpty)
        let active = try await store.activeJobs()
        #expect(Set(active.map(\.id)) == Set([first.jobs[1].id] + second.jobs.map(\.id)))
        #expect(active.allSatisfy { $0.state.isActive })
    }

    static func jobCounts(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        #expect(try await store.jobCounts(states: JobState.allCases).isEmpty)
        let (_, plan) = try await released(store, "1", to: ["a", "b", "c", "d"])
        var ended = [plan.jobs[0], plan.jobs[1], plan.jobs[2]]
        for (index, state) in [JobState.succeeded, .failed, .succeeded].enumerated() {
            ended[index].state = state
            ended[index].updatedAt = t0 + 10
        }
        try await store.commit(StoreBatch(jobs: ended))
        #expect(try await store.jobCounts(states: [.succeeded, .failed, .canceled]) == [.succeeded: 2, .failed: 1])
        #expect(try await store.jobCounts(states: [.queued]) == [.queued: 1])
        #expect(try await store.jobCounts(states: []).isEmpty)
    }
}
