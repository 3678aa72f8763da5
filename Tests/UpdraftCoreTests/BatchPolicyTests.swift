import Foundation
import Testing
@testable import UpdraftCore

@Suite struct BatchPolicyTests {
    let now = FleetHarness.t0

    @Test func defaults() {
        let policy = BatchPolicy()
        #expect(policy.sourceVersions.isEmpty)
        #expect(policy.membership == .dynamic)
        #expect(policy.selection == .all)
        #expect(policy.start == .now)
        #expect(policy.retry == .none)
        #expect(policy.deviceTimeout == nil)
        #expect(policy.notificationsPerMinute == nil)
        #expect(policy.delivery == .immediate)
        #expect(throws: Never.self) { try policy.validate(now: now) }
    }

    @Test func startTime() {
        #expect(BatchPolicy(start: .now).startTime(createdAt: now) == now)
        #expect(BatchPolicy(start: .at(now + 300)).startTime(createdAt: now) == now + 300)
    }

    @Test(arguments: [
        (BatchPolicy(selection: .groups([])), "invalid_selection"),
        (BatchPolicy(selection: .devices([])), "invalid_selection"),
        (BatchPolicy(selection: .percentage(0)), "invalid_percentage"),
        (BatchPolicy(selection: .percentage(100.5)), "invalid_percentage"),
        (BatchPolicy(start: .at(FleetHarness.t0 - 1)), "schedule_in_past"),
        (BatchPolicy(retry: RetryPolicy(interval: -1, maxRetries: 1)), "invalid_retry"),
        (BatchPolicy(retry: RetryPolicy(interval: 60, maxRetries: 11)), "invalid_retry"),
        (BatchPolicy(deviceTimeout: 0), "invalid_timeout"),
        (BatchPolicy(notificationsPerMinute: 0), "invalid_rate"),
    ])
    func validation(_ policy: BatchPolicy, _ code: String) {
        let error = #expect(throws: UpdraftError.self) { try policy.validate(now: now) }
        #expect(error?.code == code)
    }

    @Test func sourceVersionFilter() {
        let policy = BatchPolicy(sourceVersions: ["1.0", "0.9", "1.0"])
        #expect(policy.sourceVersions == ["0.9", "1.0"])
        #expect(policy.acceptsSource("1.0", target: "2.0"))
        #expect(!policy.acceptsSource("1.5", target: "2.0"))
        #expect(policy.acceptsSource("2.0", target: "2.0"), "a device already on target stays claimed")
        #expect(!policy.acceptsSource(nil, target: "2.0"))
        #expect(BatchPolicy().acceptsSource(nil, target: "2.0"))
    }

    @Test func retryableFailures() {
        #expect(FailureReason.allCases.filter(RetryPolicy.isRetryable) == [.download, .verify, .install, .timeout])
    }

    @Test func lockPolicies() {
        #expect(BatchPolicy.lock(.now).delivery == .immediate)
        #expect(BatchPolicy.lock(.nextSession).delivery == .gradual)
        #expect(BatchPolicy.lock(.now).retry == .none)
    }

    @Test func decodesWithMissingFields() throws {
        let decoded = try JSONDecoder().decode(BatchPolicy.self, from: Data(#"{"delivery":"gradual"}"#.utf8))
        #expect(decoded == BatchPolicy(delivery: .gradual))
    }

    @Test func jobActivityClocks() {
        var activity = JobActivity()
        activity.progressed(at: now)
        activity.progressed(at: now + 10)
        activity.chunkRequested(at: now + 20)
        activity.offered(at: now + 30, nudge: true)
        #expect(activity.firstProgressAt == now)
        #expect(activity.lastActivityAt == now + 20)
        #expect(activity.lastOfferedAt == now + 30)
        #expect(activity.nudgedAt == now + 30)
    }
}
