import Foundation
import Testing
@testable import UpdraftCore

@Suite struct RolloutStateMachineTests {
    typealias Tally = RolloutStateMachine.Tally
    let now = FleetHarness.t0

    func counts(stage: Tally, total: Tally? = nil, waiting: Int = 0) -> RolloutStateMachine.Counts {
        .init(stage: stage, total: total ?? stage, waiting: waiting)
    }

    func machine(_ policy: RolloutPolicy) -> RolloutStateMachine { RolloutStateMachine(policy: policy, startsAt: now) }

    @Test func quotasFollowTheStages() {
        var m = machine(RolloutPolicy(stages: [1, 10, 50, 100], successThreshold: 0))
        var quotas: [Int] = []
        var small: [Int] = []
        for stage in 0..<4 {
            quotas.append(m.quota(population: 1000))
            small.append(m.quota(population: 3))
            if stage < 3 { _ = try? m.apply(.advance, at: now + Double(stage + 1), release: "r") }
        }
        #expect(quotas == [10, 100, 500, 1000])
        #expect(small == [1, 2, 3, 3], "each stage admits at least one more while any remain")
        #expect(m.quota(population: 0) == 0)
    }

    @Test func advancesWhenTheStageMeetsTheSuccessThreshold() {
        var m = machine(RolloutPolicy(stages: [10, 100], successThreshold: 0.9))
        var change = m.evaluate(counts(stage: Tally(admitted: 10, succeeded: 8, unsettled: 2), waiting: 90), at: now, canComplete: false)
        #expect(change == nil)
        change = m.evaluate(counts(stage: Tally(admitted: 10, succeeded: 9, unsettled: 1), waiting: 90), at: now + 5, canComplete: false)
        #expect(change == .advanced(from: 0, to: 1, automatic: true))
        #expect(m.stage == 1)
        #expect(m.stagePercent == 100)
        #expect(m.stageStartedAt == [now, now + 5])
        // Last stage: nothing more to advance to.
        change = m.evaluate(counts(stage: Tally(admitted: 90, succeeded: 90)), at: now + 9, canComplete: false)
        #expect(change == nil)
    }

    @Test func minimumStageDurationHoldsTheAdvance() {
        var m = machine(RolloutPolicy(stages: [10, 100], successThreshold: 0.5, minimumStageDuration: 3600))
        let good = counts(stage: Tally(admitted: 10, succeeded: 10), waiting: 90)
        var change = m.evaluate(good, at: now + 60, canComplete: false)
        #expect(change == nil)
        #expect(m.wakeup(good, after: now + 60) == now + 3600)
        #expect(m.wakeup(counts(stage: Tally(admitted: 10, succeeded: 1, unsettled: 9), waiting: 90), after: now + 60) == nil)
        change = m.evaluate(good, at: now + 3600, canComplete: false)
        #expect(change == .advanced(from: 0, to: 1, automatic: true))
    }

    @Test func stageWithNothingNewIsMeasuredOnEveryone() {
        var m = machine(RolloutPolicy(stages: [50, 60, 100], successThreshold: 1))
        _ = try? m.apply(.advance, at: now + 1, release: "r")
        // Devices still waiting to be admitted: nothing to measure yet.
        var change = m.evaluate(counts(stage: Tally(), total: Tally(admitted: 2, succeeded: 2), waiting: 1), at: now + 2, canComplete: false)
        #expect(change == nil)
        // Everyone admitted by earlier stages: measure them all.
        #expect(
            m.evaluate(counts(stage: Tally(), total: Tally(admitted: 2, succeeded: 2), waiting: 0), at: now + 2, canComplete: false)
                == .advanced(from: 1, to: 2, automatic: true))
        // And no devices at all: wait for some.
        var empty = machine(RolloutPolicy(stages: [50, 100], successThreshold: 0))
        change = empty.evaluate(counts(stage: Tally()), at: now, canComplete: false)
        #expect(change == nil)
    }

    @Test func errorThresholdPauses() {
        var m = machine(RolloutPolicy(stages: [10, 100], successThreshold: 0.9, errorThreshold: 0.2))
        var change = m.evaluate(counts(stage: Tally(admitted: 10, failed: 2, unsettled: 8)), at: now, canComplete: false)
        #expect(change == nil, "20% is not past 20%")
        change = m.evaluate(counts(stage: Tally(admitted: 10, failed: 3, unsettled: 7)), at: now, canComplete: false)
        #expect(change == .paused(.errorThreshold(failed: 3, of: 10)))
        #expect(m.phase == .paused(.errorThreshold(failed: 3, of: 10)))
        #expect(!m.isAdmitting)
        change = m.evaluate(counts(stage: Tally(admitted: 10, failed: 9)), at: now, canComplete: false)
        #expect(change == nil, "paused: no input changes it")
    }

    @Test func errorThresholdAbortsWhenConfigured() {
        var m = machine(RolloutPolicy(stages: [100], errorThreshold: 0, onError: .abort))
        let change = m.evaluate(counts(stage: Tally(admitted: 50, succeeded: 49, failed: 1)), at: now, canComplete: true)
        #expect(change == .aborted(failed: 1, of: 50))
        #expect(m.phase.isFinal)
    }

    @Test func failuresOfEarlierStagesStillCount() {
        var m = machine(RolloutPolicy(stages: [10, 100], errorThreshold: 0.1))
        _ = try? m.apply(.advance, at: now + 1, release: "r")
        let change = m.evaluate(
            counts(stage: Tally(admitted: 90, succeeded: 5, unsettled: 85), total: Tally(admitted: 100, succeeded: 5, failed: 11, unsettled: 84)),
            at: now + 2, canComplete: false)
        #expect(change == .paused(.errorThreshold(failed: 11, of: 100)))
    }

    @Test func completesOnlyStaticBatchesWhenEveryoneIsSettled() {
        var m = machine(.single)
        let done = counts(stage: Tally(admitted: 3, succeeded: 2, failed: 1), waiting: 0)
        var change = m.evaluate(done, at: now, canComplete: false)
        #expect(change == nil)
        change = m.evaluate(counts(stage: Tally(admitted: 3, succeeded: 2, failed: 1, unsettled: 1)), at: now, canComplete: true)
        #expect(change == nil)
        change = m.evaluate(counts(stage: Tally(admitted: 3, succeeded: 3), waiting: 1), at: now, canComplete: true)
        #expect(change == nil)
        change = m.evaluate(done, at: now, canComplete: true)
        #expect(change == .completed)
        #expect(m.phase == .completed)
    }

    // MARK: Operator commands

    @Test func manualCommands() throws {
        var m = machine(RolloutPolicy(stages: [1, 10, 100]))
        var change = try m.apply(.advance, at: now + 1, release: "r")
        #expect(change == .advanced(from: 0, to: 1, automatic: false))
        change = try m.apply(.pause, at: now + 2, release: "r")
        #expect(change == .paused(.operatorRequest))
        change = try m.apply(.pause, at: now + 2, release: "r")
        #expect(change == nil)
        let paused = #expect(throws: UpdraftError.self) { try m.apply(.advance, at: now + 3, release: "r") }
        #expect(paused?.code == "rollout_paused")
        #expect(paused?.message.contains("updraft release resume r") == true)
        change = try m.apply(.resume, at: now + 4, release: "r")
        #expect(change == .resumed)
        #expect(m.failuresCountedFrom == nil, "an operator pause does not reset failures")
        change = try m.apply(.resume, at: now + 4, release: "r")
        #expect(change == nil)
        change = try m.apply(.advance, at: now + 5, release: "r")
        #expect(change == .advanced(from: 1, to: 2, automatic: false))
        let last = #expect(throws: UpdraftError.self) { try m.apply(.advance, at: now + 6, release: "r") }
        #expect(last?.code == "rollout_last_stage")
        change = try m.apply(.cancel, at: now + 7, release: "r")
        #expect(change == .canceled)
        change = try m.apply(.cancel, at: now + 7, release: "r")
        #expect(change == nil)
        for command in [RolloutStateMachine.Command.advance, .pause, .resume] {
            let stopped = #expect(throws: UpdraftError.self) { try m.apply(command, at: now + 8, release: "r") }
            #expect(stopped?.code == "rollout_stopped")
        }
    }

    @Test func resumingAnErrorPauseCountsOnlyNewFailures() throws {
        var m = machine(RolloutPolicy(stages: [100], errorThreshold: 0.1))
        _ = m.evaluate(counts(stage: Tally(admitted: 10, failed: 5, unsettled: 5)), at: now, canComplete: false)
        let change = try m.apply(.resume, at: now + 60, release: "r")
        #expect(change == .resumed)
        #expect(m.failuresCountedFrom == now + 60)
        #expect(!m.countsFailure(at: now + 59))
        #expect(m.countsFailure(at: now + 60))
    }

    @Test func completedReleaseCanOnlyBeCanceled() throws {
        var m = machine(.single)
        _ = m.evaluate(counts(stage: Tally(admitted: 1, succeeded: 1)), at: now, canComplete: true)
        let error = #expect(throws: UpdraftError.self) { try m.apply(.pause, at: now, release: "r") }
        #expect(error?.code == "rollout_completed")
        let change = try m.apply(.cancel, at: now, release: "r")
        #expect(change == .canceled)
    }

    @Test func abortedReleaseIgnoresCancel() throws {
        var m = machine(RolloutPolicy(errorThreshold: 0, onError: .abort))
        _ = m.evaluate(counts(stage: Tally(admitted: 1, failed: 1)), at: now, canComplete: false)
        let change = try m.apply(.cancel, at: now, release: "r")
        #expect(change == nil)
    }

    @Test func stageOfADate() throws {
        var m = machine(RolloutPolicy(stages: [10, 50, 100]))
        _ = try m.apply(.advance, at: now + 100, release: "r")
        _ = try m.apply(.advance, at: now + 200, release: "r")
        #expect(m.stage(at: now - 1) == 0)
        #expect(m.stage(at: now + 99) == 0)
        #expect(m.stage(at: now + 100) == 1)
        #expect(m.stage(at: now + 250) == 2)
    }

    @Test(arguments: [
        (RolloutPolicy(stages: []), "invalid_stages"),
        (RolloutPolicy(stages: [10, 50]), "invalid_stages"),
        (RolloutPolicy(stages: [50, 10, 100]), "invalid_stages"),
        (RolloutPolicy(stages: [0, 100]), "invalid_stages"),
        (RolloutPolicy(successThreshold: 1.5), "invalid_threshold"),
        (RolloutPolicy(errorThreshold: -0.1), "invalid_threshold"),
        (RolloutPolicy(minimumStageDuration: -1), "invalid_stage_duration"),
    ])
    func policyValidation(_ policy: RolloutPolicy, _ code: String) {
        let error = #expect(throws: UpdraftError.self) { try policy.validate() }
        #expect(error?.code == code)
    }

    @Test func roundTripsThroughJSON() throws {
        var m = machine(RolloutPolicy(stages: [1, 100], successThreshold: 0.5, errorThreshold: 0.1, onError: .abort, minimumStageDuration: 60))
        _ = try m.apply(.pause, at: now, release: "r")
        let decoded = try JSONDecoder().decode(RolloutStateMachine.self, from: JSONEncoder().encode(m))
        #expect(decoded == m)
        let release = FleetRelease(id: "r1", firmware: FleetHarness.fw("2.0"), target: .groups(["lab"]), policy: BatchPolicy(sourceVersions: ["1.0"], membership: .static, selection: .percentage(12.5), start: .at(now + 60), retry: RetryPolicy(interval: 600, maxRetries: 2), deviceTimeout: 900, notificationsPerMinute: 100, delivery: .gradual), createdAt: now)
        #expect(try JSONDecoder().decode(FleetRelease.self, from: JSONEncoder().encode(release)) == release)
    }
}
