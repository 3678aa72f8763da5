import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

/// The engine judges installs only by announcements made after the install step: the
/// broker's replay of a retained announcement (old version) while the device reboots,
/// and a restarted gateway, never fail a job; repeats of applied reports stay silent.
@Suite("UpdateEngine replayed announcements")
struct AnnouncementReplayTests {
    func announcement(_ version: FirmwareVersion, boot: UInt64?) -> Announcement {
        Announcement(product: "p", version: version, boot: boot)
    }

    /// A job for `id` that the device reported `installed`.
    func installedJob(_ f: EngineFixture, _ id: DeviceID, boot: UInt64?) async throws -> Job {
        await f.engine.announced(id, announcement("1", boot: boot))
        _ = try await f.release()
        await f.tick()
        let job = try #require(await f.engine.activeJob(of: id))
        for report in [DeviceReport.downloading(percent: 50), .downloaded, .verified, .installing, .installed] {
            #expect(await f.engine.report(id, job: job.id, report).refusal == nil)
        }
        #expect(await f.engine.activeJob(of: id)?.state == .installed)
        return job
    }

    func restarted(_ f: EngineFixture) async throws -> UpdateEngine {
        try await f.engine.flush()
        let engine = UpdateEngine(store: f.store, logger: testLogger, now: { [clock = f.clock] in clock.now })
        try await engine.load()
        return engine
    }

    func refusals(_ f: EngineFixture) async throws -> Int {
        try await f.store.events(after: 0, limit: 10_000).filter { $0.kind == .jobRefused }.count
    }

    @Test func aReplayedOldAnnouncementDoesNotFailTheInstallButALiveOneDoes() async throws {
        try await FleetEngineFixture.with { f in
            let job = try await installedJob(f, "d1", boot: nil)
            await f.engine.announced("d1", announcement("1", boot: nil), replayed: true)
            #expect(await f.engine.activeJob(of: "d1")?.state == .installed, "a retained copy is not a restart")
            await f.engine.announced("d1", announcement("1", boot: nil))
            try await f.engine.flush()
            let failed = try #require(try await f.store.job(job.id))
            #expect(failed.state == .failed)
            #expect(failed.failure == .install)
        }
    }

    @Test func aRestartedGatewayWaitsForTheRebootAndTheNewVersionSucceeds() async throws {
        try await FleetEngineFixture.with { f in
            let job = try await installedJob(f, "d1", boot: 41)
            let engine = try await restarted(f)
            // The first things a restarted gateway hears: retained presence and announcement.
            await engine.presence("d1", online: false, replayed: true)
            await engine.announced("d1", announcement("1", boot: 41), replayed: true)
            // A re-announce of the same boot is not a reboot either.
            await engine.announced("d1", announcement("1", boot: 41))
            #expect(await engine.activeJob(of: "d1")?.state == .installed)
            await engine.announced("d1", announcement("2", boot: 42))
            try await engine.flush()
            #expect(try await f.store.job(job.id)?.state == .succeeded)
            #expect(try await f.store.device("d1")?.boot == 42)
        }
    }

    @Test func aDeviceThatCameBackOnTheOldVersionWhileTheGatewayWasAwayFailsAtOnce() async throws {
        try await FleetEngineFixture.with { f in
            let job = try await installedJob(f, "d1", boot: 41)
            let engine = try await restarted(f)
            // Retained, but from a later boot than the one that installed: news.
            await engine.announced("d1", announcement("1", boot: 42), replayed: true)
            try await engine.flush()
            #expect(try await f.store.job(job.id)?.failure == .install)
        }
    }

    @Test func anOlderCopyRestoredByTheBrokerIsIgnored() async throws {
        try await FleetEngineFixture.with { f in
            await f.engine.announced("d1", announcement("2", boot: 9))
            await f.engine.announced("d1", announcement("1", boot: 8), replayed: true)
            try await f.engine.flush()
            let device = try #require(try await f.store.device("d1"))
            #expect(device.version == "2")
            #expect(device.boot == 9)
        }
    }

    @Test func aReplayedOnlineIsNotTheDeviceSpeaking() async throws {
        try await FleetEngineFixture.with { f in
            await f.engine.presence("d1", online: true)
            let spoke = f.clock.now
            f.clock.advance(600)
            try await f.engine.flush()
            let engine = try await restarted(f)
            await engine.presence("d1", online: true, replayed: true)
            try await engine.flush()
            let device = try #require(try await f.store.device("d1"))
            #expect(device.online, "the best knowledge there is")
            #expect(device.lastSeen == spoke, "but not proof the device is there now")
        }
    }

    @Test func reportsRedeliveredAfterARestartAreSilent() async throws {
        try await FleetEngineFixture.with { f in
            let job = try await installedJob(f, "d1", boot: 3)
            let engine = try await restarted(f)
            let before = try await refusals(f)
            for report in [DeviceReport.downloading(percent: 50), .downloaded, .verified, .installing, .installed] {
                #expect(await engine.report("d1", job: job.id, report).refusal == nil, "\(report.name)")
            }
            try await engine.flush()
            #expect(try await refusals(f) == before)
            #expect(try await f.store.job(job.id)?.state == .installed)
        }
    }
}
