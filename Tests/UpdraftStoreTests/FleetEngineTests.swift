import Foundation
import Synchronization
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

/// A clock the test moves by hand: schedules, retries and stalls without sleeping.
final class ManualClock: Sendable {
    private let current: Mutex<Date>
    init(_ start: Date) { current = Mutex(start) }
    var now: Date { current.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLock { $0 += seconds } }
}

/// The commands the engine returned to the fixture's calls, in order, as a router gets them.
final class CommandLog: Sendable {
    private let sent = Mutex<[DeviceCommand]>([])
    func record(_ commands: [DeviceCommand]) { sent.withLock { $0 += commands } }
    func offers(to device: DeviceID) -> [JobID] { sent.withLock { $0.offers(to: device) } }
    var offerCount: Int { sent.withLock { $0.filter { if case .offer = $0.action { true } else { false } }.count } }
}

extension [DeviceCommand] {
    /// The jobs offered to `device`, in order.
    func offers(to device: DeviceID) -> [JobID] {
        compactMap { command in
            guard command.device == device, case .offer(let job, _) = command.action else { return nil }
            return job.id
        }
    }

    /// The jobs withdrawn from `device`, in order.
    func withdrawals(from device: DeviceID) -> [JobID] {
        compactMap { command in
            guard command.device == device, case .withdraw(let job) = command.action else { return nil }
            return job
        }
    }
}

/// The engine running the fleet rules over a store (the in-memory one (which passes the same
/// contract as SQLite, see StoreContractTests; SQLite where a test needs the file), with an
/// injected clock.
struct FleetEngineFixture<Store: StatusStore> {
    let store: Store
    let clock: ManualClock
    let sent = CommandLog()
    let engine: UpdateEngine
    let target: Firmware

    init(store: Store, clock: ManualClock, target: Firmware) {
        self.store = store
        self.clock = clock
        self.target = target
        engine = UpdateEngine(store: store, logger: testLogger, now: { [clock] in clock.now })
    }

    /// Runs `body` with `store`, holding firmware "p" 1 and 2 (2 is the target), the engine loaded.
    static func with(_ store: Store, _ body: (FleetEngineFixture) async throws -> Void) async throws {
        try await addFirmware(store, "p", "1")
        let target = try await addFirmware(store, "p", "2").firmware
        let f = FleetEngineFixture(store: store, clock: ManualClock(t0 + 1000), target: target)
        try await f.engine.load()
        try await body(f)
    }

    func release(_ policy: BatchPolicy = BatchPolicy(), rollout: RolloutPolicy = .single, target: FleetTarget = .productDefault("p")) async throws -> FleetRelease {
        let release = FleetRelease(
            firmware: FirmwareRef(self.target), target: target, policy: policy, rollout: rollout, forcedFrom: .unverified,
            createdAt: clock.now)
        try await store.commit(StoreBatch(fleetReleases: [release]))
        try await engine.fleetReleaseChanged(release.id)
        return release
    }

    func announce(_ id: DeviceID, version: FirmwareVersion = "1", accepts: Bool = true) async {
        sent.record(await engine.announced(id, Announcement(product: "p", version: version, acceptsUpdates: accepts)).commands)
    }

    /// Ticks the planner; the commands it returns go to ``sent``.
    @discardableResult
    func tick() async -> TickResult {
        let result = await engine.tick()
        sent.record(result.commands)
        return result
    }

    @discardableResult
    func tickIfDue() async -> TickResult {
        let result = await engine.tickIfDue()
        sent.record(result.commands)
        return result
    }

    /// The device runs the whole update and comes back on the target version.
    func complete(_ id: DeviceID) async throws {
        let job = try #require(await engine.activeJob(of: id))
        for report in [DeviceReport.downloading(percent: 50), .downloaded, .verified, .installing, .installed] {
            let reply = await engine.report(id, job: job.id, report)
            #expect(reply.refusal == nil)
            sent.record(reply.commands)
        }
        await announce(id, version: target.version)
    }
}

@Suite("UpdateEngine fleet wiring")
struct FleetEngineTests {
    @Test func aProductDefaultReleaseOffersOnlineDevicesAndVerifiesTheFirmware() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1")
            await f.announce("d2")
            let release = try await f.release()
            await f.tick()
            for id: DeviceID in ["d1", "d2"] {
                let job = try #require(await f.engine.activeJob(of: id))
                #expect(job.releaseID == release.id)
                #expect(job.state == .notified)
                #expect(f.sent.offers(to: id) == [job.id])
            }
            try await f.complete("d1")
            #expect(await f.engine.activeJob(of: "d1") == nil)
            #expect(await f.engine.verification(of: f.target.id)?.status == .verified)
            try await f.engine.flush()
            #expect(try await f.store.verification(firmwareID: f.target.id)?.status == .verified)
            let jobs = try await f.store.jobs(release: release.id)
            #expect(jobs.count == 2)
            #expect(jobs.filter { $0.state == .succeeded }.map(\.deviceID) == ["d1"])
            let events = try await f.store.events(after: 0, limit: 1000)
            #expect(events.contains { $0.kind == .verificationStatus && $0.firmwareID == f.target.id })
            // Nothing more to do: ticking again changes nothing.
            #expect(await f.tick().actions == 0)
        }
    }

    @Test func aScheduledReleaseStartsOnTimeAndRetriesAfterAFailure() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1")
            let start = f.clock.now + 3600
            _ = try await f.release(BatchPolicy(start: .at(start), retry: RetryPolicy(interval: 60, maxRetries: 1)))
            #expect(await f.tick().actions == 0)
            #expect(await f.engine.activeJob(of: "d1") == nil)
            #expect(await f.engine.nextFleetWakeup == start)

            f.clock.advance(3600)
            #expect(await f.tickIfDue().actions > 0)
            let first = try #require(await f.engine.activeJob(of: "d1"))
            #expect(f.sent.offers(to: "d1") == [first.id])

            let failed = await f.engine.report("d1", job: first.id, .failed(.download, detail: "flash full"))
            #expect(failed.commands.withdrawals(from: "d1") == [first.id], "an ended job is withdrawn")
            await f.tick()
            #expect(await f.engine.activeJob(of: "d1") == nil, "the retry waits for its interval")
            let wakeup = try #require(await f.engine.nextFleetWakeup)
            #expect(wakeup > f.clock.now)

            f.clock.advance(61)
            #expect(await f.tickIfDue().actions > 0)
            let second = try #require(await f.engine.activeJob(of: "d1"))
            #expect(second.id != first.id)
            #expect(f.sent.offers(to: "d1") == [first.id, second.id])

            // The retry fails too: no attempts left.
            await f.engine.report("d1", job: second.id, .failed(.download, detail: "flash full"))
            f.clock.advance(3600)
            await f.tick()
            #expect(await f.engine.activeJob(of: "d1") == nil)
        }
    }

    @Test func commandsAreAddressedToTheDevicesTransportInTheOrderTheyWereMade() async throws {
        try await FleetEngineFixture.with { f in
            await f.engine.announced("d1", Announcement(product: "p", version: "1"), via: .coap)
            await f.announce("d2")
            _ = try await f.release()
            let commands = await f.tick().commands
            #expect(commands.count == 2)
            #expect(commands.first { $0.device == "d1" }?.transport == .coap)
            #expect(commands.first { $0.device == "d2" }?.transport == .mqtt)
            let job = try #require(await f.engine.activeJob(of: "d1"))
            let canceled = await f.engine.report("d1", job: job.id, .failed(.download, detail: "no space"))
            let all = commands + canceled.commands
            #expect(all.map(\.sequence) == all.map(\.sequence).sorted(), "sequence numbers grow")
            #expect(canceled.commands.map(\.action) == [.withdraw(job.id)])
            #expect(canceled.commands.first?.transport == .coap)
        }
    }

    @Test func aDeviceThatDoesNotAcceptUpdatesKeepsItsJobPendingUntilItDoes() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1", accepts: false)
            let release = try await f.release()
            await f.tick()
            let job = try #require(await f.engine.activeJob(of: "d1"))
            #expect(job.state == .queued)
            #expect(f.sent.offerCount == 0)
            let status = try #require(await f.engine.releaseStatus(release.id))
            #expect(status.counts.pendingConsent == 1)

            f.clock.advance(1)
            await f.announce("d1", accepts: true)
            await f.tickIfDue()
            #expect(f.sent.offers(to: "d1") == [job.id])
        }
    }

    @Test func failuresPastTheThresholdPauseAStagedRollout() async throws {
        try await FleetEngineFixture.with { f in
            for i in 0..<10 { await f.announce(DeviceID(unchecked: "d\(i)")) }
            let release = try await f.release(
                BatchPolicy(membership: .static), rollout: RolloutPolicy(stages: [20, 100], errorThreshold: 0.4, onError: .pause))
            await f.tick()
            let admitted = (0..<10).map { DeviceID(unchecked: "d\($0)") }
            var canary: [Job] = []
            for id in admitted { if let job = await f.engine.activeJob(of: id) { canary.append(job) } }
            #expect(canary.count == 2)
            f.clock.advance(1)
            for job in canary { await f.engine.report(job.deviceID, job: job.id, .failed(.install, detail: "boot loop")) }
            await f.tick()
            #expect(await f.engine.fleetRelease(release.id)?.rollout.phase == .paused(.errorThreshold(failed: 2, of: 2)))
            var active = 0
            for id in admitted where await f.engine.activeJob(of: id) != nil { active += 1 }
            #expect(active == 0, "a paused rollout admits no one")
            try await f.engine.flush()
            #expect(try await f.store.fleetRelease(release.id)?.rollout.phase == .paused(.errorThreshold(failed: 2, of: 2)))
            #expect(try await f.store.events(after: 0, limit: 1000).contains { $0.kind == .rolloutChanged && $0.releaseID == release.id })
        }
    }

    @Test func theLogEchoOfAJobThatAlreadyEndedDoesNotBlockItsRetry() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1")
            _ = try await f.release(BatchPolicy(retry: RetryPolicy(interval: 1, maxRetries: 1)))
            await f.tick()
            let first = try #require(await f.engine.activeJob(of: "d1"))
            try await f.engine.flush()
            // The job fails before the gateway's event tail reads its job.created entry.
            await f.engine.report("d1", job: first.id, .failed(.verify, detail: "digest mismatch"))
            try await f.engine.jobCreated(first.id)
            #expect(await f.engine.activeJob(of: "d1") == nil)
            f.clock.advance(2)
            await f.tick()
            let retry = try #require(await f.engine.activeJob(of: "d1"))
            #expect(retry.id != first.id)
        }
    }

    @Test func aStalledDownloadIsNudgedThenFailedWithATimeout() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1")
            _ = try await f.release()
            await f.tick()
            let job = try #require(await f.engine.activeJob(of: "d1"))
            await f.engine.report("d1", job: job.id, .downloading(percent: 10))
            _ = await f.engine.authorizeDownload("d1", job: job.id)
            await f.tick()
            #expect(f.sent.offers(to: "d1").count == 1)

            // Silent for the stall time: one re-offer (the nudge).
            f.clock.advance(121)
            #expect(await f.tickIfDue().actions > 0)
            #expect(f.sent.offers(to: "d1").count == 2)
            #expect(await f.engine.activeJob(of: "d1")?.state == .downloading)

            // Still silent: failed with a timeout reason.
            f.clock.advance(121)
            await f.tickIfDue()
            #expect(await f.engine.activeJob(of: "d1") == nil)
            try await f.engine.flush()
            let stored = try #require(try await f.store.job(job.id))
            #expect(stored.state == .failed)
            #expect(stored.failure == .timeout)
        }
    }

    @Test func anOperatorCancelFromAnotherProcessCancelsQueuedJobs() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1", accepts: false)
            let release = try await f.release()
            await f.tick()
            let job = try #require(await f.engine.activeJob(of: "d1"))
            try await f.engine.flush()

            // What `updraft release cancel` writes; the gateway's event tail then reloads it.
            try await f.store.updateFleetRelease(release.id) { release in
                _ = try release.apply(.cancel, at: f.clock.now)
                return [UpdraftEvent(kind: .fleetCommand, time: f.clock.now, releaseID: release.id)]
            }
            try await f.engine.fleetReleaseChanged(release.id)
            f.clock.advance(1)
            await f.tickIfDue()
            #expect(await f.engine.activeJob(of: "d1") == nil)
            try await f.engine.flush()
            let stored = try #require(try await f.store.job(job.id))
            #expect(stored.state == .canceled)
            let events = try await f.store.events(after: 0, limit: 1000)
            #expect(events.contains { $0.jobID == job.id && $0.to == .canceled && $0.detail == "release stopped" })
        }
    }

    @Test func aLockReplacesAQueuedGroupJob() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1", accepts: false)
            _ = try await f.store.updateFleetProfile("d1") { profile in
                profile.add(to: "lab")
                return StoreBatch()
            }
            try await f.engine.fleetProfileChanged("d1")
            let group = try await f.release(target: .groups(["lab"]))
            await f.tick()
            let queued = try #require(await f.engine.activeJob(of: "d1"))
            #expect(queued.releaseID == group.id)

            let pinned = try #require(try await f.store.firmwareList(product: "p").first { $0.version == "1" })
            _ = try await f.store.updateFleetProfile("d1") { profile in
                let (release, lock) = FleetRelease.lock(device: "d1", firmware: FirmwareRef(pinned), delivery: .now, now: f.clock.now)
                profile.lock = lock
                return StoreBatch(fleetReleases: [release])
            }
            try await f.engine.fleetProfileChanged("d1")
            f.clock.advance(1)
            await f.tick()
            // d1 already runs the locked version: the group's queued job goes, nothing replaces it.
            #expect(await f.engine.activeJob(of: "d1") == nil)
            try await f.engine.flush()
            #expect(try await f.store.job(queued.id)?.state == .canceled)
        }
    }

    @Test func fleetStateSurvivesARestart() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1")
            let release = try await f.release(BatchPolicy(deviceTimeout: 600, notificationsPerMinute: 10))
            await f.tick()
            let job = try #require(await f.engine.activeJob(of: "d1"))
            await f.engine.report("d1", job: job.id, .downloading(percent: 5))
            try await f.engine.flush()
            let activity = try #require(try await f.store.jobActivity()[job.id])
            #expect(activity.firstProgressAt == f.clock.now)
            #expect(try await f.store.plannerState()?.limiters[release.id]?.granted.count == 1)

            let restarted = UpdateEngine(store: f.store, logger: testLogger, now: { [clock = f.clock] in clock.now })
            try await restarted.load()
            #expect(await restarted.activeJob(of: "d1")?.id == job.id)
            #expect(await restarted.fleetRelease(release.id) != nil)
            f.clock.advance(1)
            await restarted.tick()
            #expect(await restarted.activeJob(of: "d1")?.id == job.id, "no second job after the restart")
            // The per-device timeout still counts from the first report made before the restart.
            f.clock.advance(599)
            await restarted.tickIfDue()
            #expect(await restarted.activeJob(of: "d1") == nil)
            try await restarted.flush()
            #expect(try await f.store.job(job.id)?.failure == .timeout)
            #expect(try await f.store.jobActivity().isEmpty)
        }
    }
}

extension FleetEngineFixture where Store == InMemoryStatusStore {
    static func with(_ body: (FleetEngineFixture) async throws -> Void) async throws {
        try await with(TestStores.inMemory(), body)
    }
}

extension FleetEngineFixture where Store == SQLiteStatusStore {
    /// On a SQLite file: for what only a real database does (a full disk, refused writes).
    static func withSQLite(_ body: (FleetEngineFixture) async throws -> Void) async throws {
        try await SQLiteFixture.with { fixture in try await with(fixture.sqlite, body) }
    }
}

/// The engine tests' usual fixture: the engine over the in-memory store.
typealias EngineFixture = FleetEngineFixture<InMemoryStatusStore>
