import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

/// The engine's side of `updraft job cancel`: the CLI writes the job canceled (and a
/// `fleet.command` naming it); the engine, told from the event tail, withdraws the offer and
/// never writes its older copy back as active.
@Suite("UpdateEngine operator cancel")
struct OperatorCancelEngineTests {
    /// What `Operations.cancelJob` writes.
    static func cancelInStore<S: StatusStore>(_ f: FleetEngineFixture<S>, _ job: Job) async throws {
        var machine = JobStateMachine(job)
        _ = machine.cancel(at: f.clock.now)
        try await f.store.commit(
            StoreBatch(
                jobs: [machine.job],
                events: [UpdraftEvent(kind: .fleetCommand, time: f.clock.now, deviceID: job.deviceID, jobID: job.id, actor: "cli:alice")]))
    }

    @Test func aJobCanceledByTheOperatorIsWithdrawnAndStaysCanceled() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1")
            _ = try await f.release()
            await f.tick()
            try await f.engine.flush()
            // As the CLI finds it: in the store.
            let job = try #require(try await f.store.activeJobs().first { $0.deviceID == "d1" })
            try await Self.cancelInStore(f, job)
            let commands = try await f.engine.jobCanceledByOperator(job.id)
            #expect(commands.withdrawals(from: "d1") == [job.id])
            #expect(await f.engine.activeJob(of: "d1") == nil)
            // What the device still sends about it is refused, and a flush keeps it canceled.
            #expect(await f.engine.report("d1", job: job.id, .downloading(percent: 60)).refusal != nil)
            try await f.engine.flush()
            #expect(try await f.store.job(job.id)?.state == .canceled)
        }
    }

    @Test func aCancelOfAJobTheEngineDoesNotHoldChangesNothing() async throws {
        try await FleetEngineFixture.with { f in
            await f.announce("d1")
            let commands = try await f.engine.jobCanceledByOperator("j0000000000000000")
            #expect(commands.isEmpty)
            #expect(await f.engine.activeJob(of: "d1") == nil)
        }
    }
}
