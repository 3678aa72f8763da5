import Foundation
import Testing
import UpdraftCore

// The writes of a running gateway, the event log, and several writers on one database.
extension StoreContract {
    // MARK: Gateway writes

    static func oneActiveJobPerDevice(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let (target, plan) = try await released(store, "1", to: ["d1"])
        let active = try #require(plan.jobs.first)
        let before = try await store.lastEventSequence()

        let intruder = Job(
            releaseID: plan.release.id, deviceID: "d1", firmwareID: target.id, targetVersion: "1", createdAt: t0 + 1)
        let error = await #expect(throws: UpdraftError.self) {
            try await store.commit(
                StoreBatch(
                    devices: [Device(id: "d1", product: "p", version: "0", online: true)], jobs: [intruder],
                    events: [UpdraftEvent.job(.jobCreated, intruder, time: t0 + 1)]))
        }
        #expect(error?.code == "active_job_exists")
        #expect(error?.message.contains(active.id.rawValue) == true)
        // The whole batch rolled back.
        #expect(try await store.job(intruder.id) == nil)
        #expect(try await store.lastEventSequence() == before)
        #expect(try await store.device("d1")?.online == false)

        // Reviving a finished job while another is active is refused too.
        var finished = intruder
        finished.state = .failed
        finished.failure = .download
        try await store.commit(StoreBatch(jobs: [finished]))
        var revived = finished
        revived.state = .downloading
        let again = await #expect(throws: UpdraftError.self) { try await store.commit(StoreBatch(jobs: [revived])) }
        #expect(again?.code == "active_job_exists")
        #expect(try await store.job(intruder.id)?.state == .failed)
    }

    static func commitReplacesActiveJob(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let (target, plan) = try await released(store, "1", to: ["d1"])
        var old = try #require(plan.jobs.first)
        old.state = .canceled
        old.updatedAt = t0 + 10
        let next = Job(
            releaseID: plan.release.id, deviceID: "d1", firmwareID: target.id, targetVersion: "1", createdAt: t0 + 10)
        // The new job comes first in the batch on purpose.
        try await store.commit(StoreBatch(jobs: [next, old]))
        #expect(try await store.activeJobs() == [next])
        #expect(try await store.job(old.id)?.state == .canceled)
    }

    static func commitUpserts(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let (target, plan) = try await released(store, "2", to: ["d1"])
        let before = try await store.lastEventSequence()

        var device = Device(
            id: "d1", product: "p", version: "1", acceptsUpdates: false, online: true, firstSeen: t0 + 1,
            lastSeen: t0 + 2, transport: .coap, boot: UInt64.max - 1)
        var job = try #require(plan.jobs.first)
        job.state = .downloading
        job.progress = 40
        job.updatedAt = t0 + 3
        let sent = [
            UpdraftEvent(kind: .deviceOnline, time: t0 + 1, deviceID: "d1"),
            UpdraftEvent.job(.jobTransition, job, from: .queued, time: t0 + 3),
        ]
        let stored = try await store.commit(StoreBatch(devices: [device], jobs: [job], events: sent))
        #expect(stored.map(\.sequence) == [before + 1, before + 2])
        #expect(zip(stored, sent).allSatisfy { stored, sent in
            var sent = sent
            sent.sequence = stored.sequence
            return sent == stored
        })
        #expect(try await store.device("d1") == device)
        #expect(try await store.job(job.id) == job)
        #expect(try await store.events(after: before, limit: 10) == stored)

        // Full replace: optional columns go back to NULL.
        device.online = false
        device.acceptsUpdates = true
        device.lastSeen = nil
        device.transport = nil
        device.boot = nil
        job.state = .failed
        job.failure = .verify
        job.detail = "digest mismatch"
        job.updatedAt = t0 + 4
        let more = try await store.commit(
            StoreBatch(devices: [device], jobs: [job], events: [UpdraftEvent.job(.jobTransition, job, from: .downloading, time: t0 + 4)]))
        #expect(more.map(\.sequence) == [before + 3])
        #expect(try await store.device("d1") == device)
        #expect(try await store.job(job.id) == job)
        job.failure = nil
        job.detail = nil
        try await store.commit(StoreBatch(jobs: [job]))
        #expect(try await store.job(job.id) == job)
        #expect(try await store.commit(StoreBatch()) == [])
        #expect(try await store.lastEventSequence() == before + 3)
    }

    /// A CLI release racing the gateway: the gateway's batch carries a second active job
    /// for a device. That job (and its activity) is left out with why; the rest is written.
    static func commitIsolatesRefusedJob(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let (target, plan) = try await released(store, "2", to: ["d1", "d2"])
        let d1Job = try #require(plan.jobs.first { $0.deviceID == "d1" })
        var d2Job = try #require(plan.jobs.first { $0.deviceID == "d2" })
        let before = try await store.lastEventSequence()

        let intruder = Job(
            releaseID: plan.release.id, deviceID: "d1", firmwareID: target.id, targetVersion: "2", createdAt: t0 + 1)
        d2Job.state = .downloading
        d2Job.updatedAt = t0 + 1
        let batch = StoreBatch(
            devices: [Device(id: "d2", product: "p", version: "1", online: true)], jobs: [intruder, d2Job],
            events: [UpdraftEvent.job(.jobCreated, intruder, time: t0 + 1), UpdraftEvent.job(.jobTransition, d2Job, from: .queued, time: t0 + 1)],
            activity: [intruder.id: JobActivity(), d2Job.id: JobActivity()])
        let result = try await store.commitIsolatingRefusals(batch)
        #expect(result.refused.map(\.job) == [intruder])
        #expect(result.refused.first?.error.code == "active_job_exists")
        #expect(result.refused.first?.error.message.contains(d1Job.id.rawValue) == true)
        #expect(result.events.map(\.sequence) == [before + 1, before + 2])
        #expect(try await store.job(intruder.id) == nil)
        #expect(try await store.job(d1Job.id) == d1Job)
        #expect(try await store.job(d2Job.id) == d2Job)
        #expect(try await store.device("d2")?.online == true)
        #expect(Set(try await store.jobActivity().keys) == [d2Job.id])
        // The strict commit still refuses the whole batch.
        await #expect(throws: UpdraftError.self) { try await store.commit(StoreBatch(jobs: [intruder])) }
    }

    static func eventCursors(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        #expect(try await store.eventCursor("backend") == nil)
        try await store.saveEventCursor("backend", 5)
        try await store.saveEventCursor("other", 2)
        #expect(try await store.eventCursor("backend") == 5)
        try await store.saveEventCursor("backend", 3)
        #expect(try await store.eventCursor("backend") == 5)
        try await store.saveEventCursor("backend", 9)
        #expect(try await store.eventCursor("backend") == 9)
        #expect(try await store.eventCursor("other") == 2)
    }

    static func eventsOfKinds(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let kinds: [EventKind] = [.deviceOnline, .jobCreated, .deviceOffline, .firmwareAdded, .jobCreated, .deviceOnline]
        let stored = try await store.commit(StoreBatch(events: kinds.map { UpdraftEvent(kind: $0, time: t0) }))
        let first = try #require(stored.first?.sequence)
        let picked = try await store.events(after: first, through: first + 4, kinds: [.jobCreated, .firmwareAdded])
        #expect(picked.map(\.sequence) == [first + 1, first + 3, first + 4])
        #expect(try await store.events(after: first + 4, through: first + 4, kinds: [.jobCreated]).isEmpty)
    }

    // MARK: Event log

    static func eventPaging(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        for batch in [10, 1, 14] {
            let events = (0..<batch).map { UpdraftEvent(kind: .deviceAnnounced, time: t0, deviceID: "d1", detail: "n\($0)") }
            try await store.commit(StoreBatch(events: events))
        }
        #expect(try await store.lastEventSequence() == 25)
        var pages: [[Int64]] = []
        var cursor: Int64 = 0
        while true {
            let page = try await store.events(after: cursor, limit: 10)
            if page.isEmpty { break }
            pages.append(page.map(\.sequence))
            cursor = page.last!.sequence
        }
        #expect(pages.map(\.count) == [10, 10, 5])
        #expect(pages.flatMap { $0 } == Array(1...25))
        #expect(try await store.events(after: 20, limit: 2).map(\.sequence) == [21, 22])
        #expect(try await store.events(after: 25, limit: 10).isEmpty)
        #expect(try await store.events(after: 0, limit: 0).isEmpty)
    }

    static func dateRoundTrip(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let when = Date(timeIntervalSince1970: 1_723_456_789.123)
        try await store.commit(
            StoreBatch(
                devices: [Device(id: "d1", firstSeen: when, lastSeen: when)],
                events: [UpdraftEvent(kind: .deviceOnline, time: when, deviceID: "d1")]))
        let device = try #require(try await store.device("d1"))
        #expect(abs(try #require(device.lastSeen).timeIntervalSince(when)) < 0.0005)
        let event = try #require(try await store.events(after: 0, limit: 1).first)
        #expect(abs(event.time.timeIntervalSince(when)) < 0.0005)
    }

    // MARK: Several writers

    static func secondInstanceSees(_ fixture: any StoreFixture) async throws {
        let other = try await fixture.openAnother()
        _ = try await addFirmware(fixture.store, "p", "1")
        #expect(try await other.firmware(id: "p@1") != nil)
        // Sequences continue across instances.
        #expect(try await addFirmware(other, "p", "2").firmware.sequence == 2)
        #expect(try await fixture.store.lastEventSequence() == 2)
    }

    static func concurrentWriters(_ fixture: any StoreFixture) async throws {
        let stores = [fixture.store, try await fixture.openAnother()]
        let tasksPerStore = 6
        let commitsPerTask = 20
        let returned = try await withThrowingTaskGroup(of: [UpdraftEvent].self) { group in
            for (storeIndex, store) in stores.enumerated() {
                for task in 0..<tasksPerStore {
                    group.addTask {
                        var mine: [UpdraftEvent] = []
                        for commit in 0..<commitsPerTask {
                            let count = 1 + (commit % 3)
                            let events = (0..<count).map { n in
                                UpdraftEvent(
                                    kind: .deviceAnnounced, time: t0, deviceID: DeviceID(unchecked: "s\(storeIndex)-t\(task)"),
                                    detail: "s\(storeIndex) t\(task) c\(commit) n\(n)")
                            }
                            let stored = try await store.commit(StoreBatch(events: events))
                            #expect(stored.count == count)
                            // One batch gets consecutive numbers.
                            #expect(stored.map(\.sequence) == Array(stored[0].sequence..<(stored[0].sequence + Int64(count))))
                            mine += stored
                        }
                        return mine
                    }
                }
            }
            var all: [UpdraftEvent] = []
            for try await events in group {
                // Later commits of one task get larger numbers.
                #expect(events.map(\.sequence) == events.map(\.sequence).sorted())
                all += events
            }
            return all
        }
        let total = stores.count * tasksPerStore * (0..<commitsPerTask).reduce(0) { $0 + 1 + ($1 % 3) }
        #expect(returned.count == total)

        var log: [UpdraftEvent] = []
        while true {
            let page = try await fixture.store.events(after: log.last?.sequence ?? 0, limit: 97)
            if page.isEmpty { break }
            log += page
        }
        #expect(log.map(\.sequence) == Array(1...Int64(total)))
        #expect(Set(log.compactMap(\.detail)).count == total, "no event lost or duplicated")
        #expect(log == returned.sorted { $0.sequence < $1.sequence })
        #expect(try await stores[1].lastEventSequence() == Int64(total))
    }
}
