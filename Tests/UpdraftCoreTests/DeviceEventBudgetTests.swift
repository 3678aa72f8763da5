import Foundation
import Testing
@testable import UpdraftCore

@Suite struct DeviceEventBudgetTests {
    let t0 = FleetHarness.t0
    let flood: DeviceID = "flood-1"
    let calm: DeviceID = "calm-1"

    @Test func theFirstOnesAreRecordedThenTheRestDropped() {
        var budget = DeviceEventBudget(perMinute: 5)
        let decisions = (0..<100).map { budget.admit(flood, at: t0 + Double($0) * 0.01) }
        #expect(decisions.prefix(5).allSatisfy { $0 == .record(dropped: nil) })
        #expect(decisions.dropFirst(5).allSatisfy { if case .drop = $0 { true } else { false } })
        // The next permit frees up a minute after the first one.
        #expect(decisions.last == .drop(retryAt: t0 + 60))
    }

    @Test func oneSummaryWithTheCountWhenTheDeviceMayRecordAgain() {
        var budget = DeviceEventBudget(perMinute: 2)
        for i in 0..<1_000 { _ = budget.admit(flood, at: t0 + Double(i) * 0.001) }
        let next = budget.admit(flood, at: t0 + 61)
        #expect(next == .record(dropped: .init(count: 998, from: t0 + 0.002, to: t0 + 61)))
        // Counted once: the following event carries no summary.
        let following = budget.admit(flood, at: t0 + 62)
        #expect(following == .record(dropped: nil))
    }

    @Test func aFloodingDeviceDoesNotSpendAnotherDevicesBudget() {
        var budget = DeviceEventBudget(perMinute: 3)
        for i in 0..<10_000 { _ = budget.admit(flood, at: t0 + Double(i) * 0.001) }
        let calmDecisions = (0..<3).map { budget.admit(calm, at: t0 + 5 + Double($0)) }
        #expect(calmDecisions.allSatisfy { $0 == .record(dropped: nil) })
    }

    @Test func aSteadyFloodRecordsAtMostTheBudgetPlusOneSummaryPerMinute() {
        var budget = DeviceEventBudget(perMinute: 30)
        var recorded = 0
        // 20,000 messages over ten minutes.
        for i in 0..<20_000 {
            if case .record(let dropped) = budget.admit(flood, at: t0 + Double(i) * 0.03) {
                recorded += 1 + (dropped == nil ? 0 : 1)
            }
        }
        #expect(recorded <= 11 * 31)
    }

    @Test func idleDevicesAreForgotten() {
        var budget = DeviceEventBudget(perMinute: 3)
        for i in 0..<50 { _ = budget.admit(DeviceID(rawValue: "d-\(i)")!, at: t0) }
        _ = budget.admit(flood, at: t0 + 100)
        budget.forgetIdle(at: t0 + 100)
        #expect(budget.trackedDevices == 1)
    }
}
