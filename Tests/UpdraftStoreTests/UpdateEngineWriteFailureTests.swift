import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

/// The engine's flush against a real SQLite file when a write fails: one refused job does
/// not block the rest, and a store that cannot be written stops new transitions.
@Suite("UpdateEngine write failures")
struct UpdateEngineWriteFailureTests {
    /// A CLI release and the planner both give d1 a job before the gateway flushes: the
    /// database refuses the planner's (one active job per device). Before, every later
    /// flush failed until a restart.
    @Test func aJobTheDatabaseRefusesIsCanceledWithWhyAndTheRestIsWritten() async throws {
        try await FleetEngineFixture.withSQLite { f in
            await f.announce("d1")
            await f.announce("d2")
            try await f.engine.flush()
            let release = try await f.release()
            #expect(await f.tick().actions > 0)
            let planned = try #require(await f.engine.activeJob(of: "d1"))
            let d2Job = try #require(await f.engine.activeJob(of: "d2"))
            // The CLI, in another process, gives d1 a job of its own first.
            let cli = try await f.store.createRelease(
                Release(firmwareID: f.target.id, target: .devices(["d1"]), createdAt: f.clock.now), firmware: f.target)
            let cliJob = try #require(cli.jobs.first)

            let flushed = try await f.engine.flush()
            #expect(flushed.commands.map(\.action) == [.withdraw(planned.id)], "the refused job is withdrawn from d1")
            #expect(await f.engine.storeWritable)
            #expect(try await f.store.job(d2Job.id)?.state == .notified)
            #expect(try await f.store.activeJobs().filter { $0.deviceID == "d1" }.map(\.id) == [cliJob.id])
            #expect(await f.engine.activeJob(of: "d1") == nil)

            // The next flush records the cancellation and why; later writes go through.
            #expect(await f.engine.report("d2", job: d2Job.id, .downloading(percent: 30)).refusal == nil)
            try await f.engine.flush()
            let canceled = try #require(try await f.store.job(planned.id))
            #expect(canceled.state == .canceled)
            #expect(canceled.releaseID == release.id)
            let events = try await f.store.events(after: 0, limit: 1000)
            let why = try #require(events.last { $0.jobID == planned.id && $0.kind == .jobTransition })
            #expect(why.to == .canceled)
            #expect(why.detail?.contains(cliJob.id.rawValue) == true)
            #expect(try await f.store.job(d2Job.id)?.state == .downloading)

            // The operator's job reaches the engine through the log as usual.
            let adopted = try await f.engine.jobCreated(cliJob.id)
            #expect(adopted.offers(to: "d1") == [cliJob.id])
            #expect(await f.engine.activeJob(of: "d1")?.id == cliJob.id)
        }
    }

    /// The file cannot grow (SQLite's max_page_count, as a full disk): transitions are
    /// refused with `unavailable` instead of piling up in memory, and nothing accepted
    /// before is lost once the store can be written again.
    @Test func aStoreThatCannotBeWrittenStopsTransitionsUntilItCanAgain() async throws {
        try await FleetEngineFixture.withSQLite { f in
            await f.announce("d1")
            let cli = try await f.store.createRelease(
                Release(firmwareID: f.target.id, target: .devices(["d1"]), createdAt: f.clock.now), firmware: f.target)
            let job = try #require(cli.jobs.first)
            try await f.engine.jobCreated(job.id)
            #expect(await f.engine.report("d1", job: job.id, .downloading(percent: 10)).refusal == nil)
            try await f.engine.flush()

            try await f.store.capSizeForTesting(true)
            // Fill the last pages with presence changes until a write fails.
            var failure: (any Error)?
            var toggles = 0
            while failure == nil, toggles < 5000 {
                toggles += 1
                await f.engine.presence("d9", online: toggles % 2 == 1)
                do { try await f.engine.flush() } catch { failure = error }
            }
            #expect((failure as? UpdraftError)?.code == "store_full")
            #expect(await f.engine.storeWritable == false)

            let refused = await f.engine.report("d1", job: job.id, .downloading(percent: 50))
            #expect(refused.refusal?.code == "unavailable")
            #expect(refused.commands.isEmpty)
            #expect(await f.engine.announced("d1", Announcement(product: "p", version: "1")).refusal?.code == "unavailable")
            #expect(await f.engine.activeJob(of: "d1")?.progress == 10)
            await #expect(throws: UpdraftError.self) { try await f.engine.flush() }

            try await f.store.capSizeForTesting(false)
            try await f.engine.flush()
            #expect(await f.engine.storeWritable)
            #expect(await f.engine.report("d1", job: job.id, .downloading(percent: 50)).refusal == nil)
            try await f.engine.flush()
            #expect(try await f.store.job(job.id)?.progress == 50)
            let presence = try await f.store.events(after: 0, limit: 100_000).filter { $0.deviceID == "d9" }
            #expect(presence.count == toggles)
        }
    }
}
