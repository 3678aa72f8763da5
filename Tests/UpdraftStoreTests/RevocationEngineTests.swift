import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

/// The engine's side of `updraft device revoke`: what the CLI writes (a revoked profile and a
/// `device.revoked` event) reaches the engine as a profile change, as from the event tail.
@Suite("UpdateEngine revocation")
struct RevocationEngineTests {
    @discardableResult
    static func revoke<S: StatusStore>(_ f: FleetEngineFixture<S>, _ id: DeviceID, on: Bool = true) async throws -> [DeviceCommand] {
        try await f.store.updateFleetProfile(id) { profile in
            profile.revokedAt = on ? f.clock.now : nil
            return StoreBatch(events: [UpdraftEvent(kind: on ? .deviceRevoked : .fleetCommand, time: f.clock.now, deviceID: id)])
        }
        let commands = try await f.engine.fleetProfileChanged(id)
        f.sent.record(commands)
        return commands
    }

    @Test func aRevokedDevicesJobIsCanceledAndWhatItSendsIsRefusedUntilReadmitted() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1")
            await f.announce("d2")
            _ = try await f.release()
            await f.tick()
            let job = try #require(await f.engine.activeJob(of: "d1"))
            #expect(await f.engine.report("d1", job: job.id, .downloading(percent: 40)).refusal == nil)

            let commands = try await Self.revoke(f, "d1")
            #expect(await f.engine.activeJob(of: "d1") == nil)
            #expect(commands.withdrawals(from: "d1") == [job.id])
            #expect(await f.engine.device("d1")?.online == false)
            #expect(await f.engine.report("d1", job: job.id, .downloaded).refusal?.code == "device_revoked")
            #expect(await f.engine.announced("d1", Announcement(product: "p", version: "1")).refusal?.code == "device_revoked")
            if case .failure(let error) = await f.engine.authorizeDownload("d1", job: job.id) {
                #expect(error.code == "device_revoked")
            } else {
                Issue.record("a revoked device was allowed to download")
            }
            // The planner gives it nothing; the other device keeps its job.
            f.clock.advance(60)
            await f.tick()
            #expect(await f.engine.activeJob(of: "d1") == nil)
            #expect(await f.engine.activeJob(of: "d2") != nil)
            try await f.engine.flush()
            #expect(try await f.store.job(job.id)?.state == .canceled)
            let events = try await f.store.events(after: 0, limit: 1000)
            #expect(events.contains { $0.jobID == job.id && $0.to == .canceled && $0.detail == "revoked" })

            // Re-admitted: it announces again and gets a new job.
            try await Self.revoke(f, "d1", on: false)
            await f.announce("d1")
            f.clock.advance(60)
            await f.tick()
            let next = try #require(await f.engine.activeJob(of: "d1"))
            #expect(next.id != job.id)
        }
    }

    @Test func aRevocationRecordedWhileNoGatewayRanCancelsTheJobAtLoad() async throws {
        let store = TestStores.inMemory()
        try await FleetEngineFixture.with(store) { f in
            await f.announce("d1")
            _ = try await f.release()
            await f.tick()
            try await f.engine.flush()
        }
        let job = try #require(try await store.activeJobs().first)
        try await store.updateFleetProfile("d1") { profile in
            profile.revokedAt = Date()
            return StoreBatch()
        }
        let engine = UpdateEngine(store: store, logger: testLogger)
        try await engine.load()
        #expect(await engine.activeJob(of: "d1") == nil)
        try await engine.flush()
        #expect(try await store.job(job.id)?.state == .canceled)
    }

    @Test func aRevokedDeviceGetsNoFirmwareEvenWhenLocked() {
        let lock = FirmwareLock(
            releaseID: "r1", firmware: FirmwareRef(product: "p", version: "2", sequence: 2), delivery: .now, lockedAt: Date())
        let device = FleetDevice(device: Device(id: "d1", product: "p", version: "1"), profile: DeviceFleetProfile(lock: lock, revokedAt: Date()))
        #expect(DesiredFirmwareResolver.resolve(device, releases: [], at: Date()) == .none(.revoked))
    }
}
