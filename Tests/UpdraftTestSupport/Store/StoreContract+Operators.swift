import Foundation
import Testing
import UpdraftCore

/// What operators' commands need of a store (issue 11): the actor on every event they
/// record, and removing a firmware no release refers to.
extension StoreContract {
    package static let operatorChecks: [StoreContractCheck] = [
        StoreContractCheck("events keep their actor; addFirmware and createRelease stamp theirs", eventActor),
        StoreContractCheck("deleteFirmware removes an unused firmware with firmware.deleted", deleteUnusedFirmware),
        StoreContractCheck("deleteFirmware refuses a firmware a release uses, and an unknown one", deleteFirmwareInUse),
        StoreContractCheck("updateJob changes a job in one transaction: of two racing cancels one wins", updateJobIsAtomic),
    ]

    static func eventActor(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let stored = try await store.commit(
            StoreBatch(events: [
                UpdraftEvent(kind: .fleetCommand, time: t0, deviceID: "d1", detail: "unlock", actor: "cli:alice"),
                UpdraftEvent(kind: .deviceOnline, time: t0, deviceID: "d1"),
            ]))
        let added = try await store.addFirmware(product: "p", version: "1", sha256: sha("p@1"), actor: "token:ci") { sequence in
            try makeFirmware("p", "1", sequence: sequence)
        }
        let release = Release(firmwareID: added.firmware.id, target: .devices(["d1"]), createdAt: t0 + 1)
        _ = try await store.createRelease(release, firmware: added.firmware, actor: "cli:bob")
        let events = try await store.events(after: 0, limit: 100)
        #expect(events.map(\.actor) == ["cli:alice", nil, "token:ci", "cli:bob", "cli:bob"], "\(events)")
        #expect(stored.map(\.actor) == ["cli:alice", nil])
        #expect(events[0].jsonLine().contains("\"actor\":\"cli:alice\""))
        #expect(!events[1].jsonLine().contains("actor"))
    }

    static func deleteUnusedFirmware(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "1").firmware
        let kept = try await addFirmware(store, "p", "2").firmware
        #expect(try await store.deleteFirmware(firmware.id, actor: "cli:alice") == firmware)
        #expect(try await store.firmware(id: firmware.id) == nil)
        #expect(try await store.firmwareList(product: nil) == [kept])
        let event = try #require(try await store.events(after: 0, limit: 100).last)
        #expect(event.kind == .firmwareDeleted && event.firmwareID == firmware.id && event.actor == "cli:alice")
        // Its sequence stays used: a new version still numbers above it.
        #expect(try await addFirmware(store, "p", "3").firmware.sequence == 3)
    }

    static func deleteFirmwareInUse(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "1").firmware
        let release = Release(firmwareID: firmware.id, target: .devices(["d1"]), createdAt: t0 + 1)
        _ = try await store.createRelease(release, firmware: firmware)
        let before = try await store.lastEventSequence()
        await #expect(throws: UpdraftError.firmwareInUse(firmware.id, release: release.id)) {
            try await store.deleteFirmware(firmware.id, actor: "cli:alice")
        }
        #expect(try await store.firmware(id: firmware.id) == firmware)
        await #expect(throws: UpdraftError.self) { try await store.deleteFirmware("p@9", actor: nil) }
        #expect(try await store.lastEventSequence() == before)
    }

    static func updateJobIsAtomic(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let firmware = try await addFirmware(store, "p", "1").firmware
        let release = Release(firmwareID: firmware.id, target: .devices(["d1"]), createdAt: t0 + 1)
        _ = try await store.createRelease(release, firmware: firmware)
        let job = try #require(try await store.jobs(release: release.id).first)
        let before = try await store.lastEventSequence()
        // Both read the job inside their transaction: only the first sees it active.
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    do {
                        try await store.updateJob(job.id) { job in
                            var machine = JobStateMachine(job)
                            guard case .transitioned(let from, _) = machine.cancel(at: t0 + 2) else {
                                throw UpdraftError("job_finished", "ended")
                            }
                            job = machine.job
                            return StoreBatch(events: [UpdraftEvent.job(.jobTransition, job, from: from, time: t0 + 2)])
                        }
                        return true
                    } catch {
                        return false
                    }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.count == 2 && outcomes.filter { $0 }.count == 1, "\(outcomes)")
        #expect(try await store.job(job.id)?.state == .canceled)
        let events = try await store.events(after: before, limit: 10)
        #expect(events.map(\.kind) == [.jobTransition], "\(events)")
        await #expect(throws: UpdraftError.self) { try await store.updateJob("j-none") { _ in StoreBatch() } }
        #expect(try await store.lastEventSequence() == before + 1)
    }
}
