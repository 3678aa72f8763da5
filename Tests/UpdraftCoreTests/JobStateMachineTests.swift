import Foundation
import Testing
@testable import UpdraftCore

@Suite struct JobStateMachineTests {
    let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    func machine(_ state: JobState = .queued, progress: Int = 0) -> JobStateMachine {
        JobStateMachine(
            Job(releaseID: "r1", deviceID: "dev-1", firmwareID: "thermo@2.0", targetVersion: "2.0",
                state: state, progress: progress, createdAt: t0))
    }

    @Test func happyPathEndsOnlyWhenTheTargetVersionIsAnnounced() {
        var m = machine()
        #expect(m.offered(at: t0) == .transitioned(from: .queued, to: .notified))
        #expect(m.report(.downloading(percent: 0), at: t0) == .transitioned(from: .notified, to: .downloading))
        #expect(m.report(.downloading(percent: 50), at: t0) == .transitioned(from: .downloading, to: .downloading))
        #expect(m.job.progress == 50)
        #expect(m.report(.downloaded, at: t0) == .transitioned(from: .downloading, to: .downloaded))
        #expect(m.job.progress == 100)
        #expect(m.report(.verified, at: t0) == .transitioned(from: .downloaded, to: .verified))
        #expect(m.report(.installing, at: t0) == .transitioned(from: .verified, to: .installing))
        #expect(m.report(.installed, at: t0) == .transitioned(from: .installing, to: .installed))
        #expect(m.job.state == .installed)
        #expect(m.announced(version: "2.0", at: t0) == .transitioned(from: .installed, to: .succeeded))
        #expect(m.job.state.isTerminal)
    }

    @Test func repeatedReportsAreUnchangedNotRefused() {
        var m = machine(.downloading, progress: 30)
        #expect(m.report(.downloading(percent: 30), at: t0) == .unchanged)
        _ = m.report(.downloaded, at: t0)
        #expect(m.report(.downloaded, at: t0) == .unchanged)
        #expect(m.offered(at: t0) == .unchanged)
    }

    @Test(arguments: [
        (JobState.queued, DeviceReport.verified),
        (.notified, .installing),
        (.downloading, .installed),
        (.downloaded, .installing),
        (.downloading, .verified),
        (.notified, .installed),
    ])
    func impossibleTransitionsAreRefusedAndLeaveTheJobAlone(state: JobState, report: DeviceReport) {
        var m = machine(state, progress: 40)
        let before = m.job
        guard case .refused = m.report(report, at: t0.addingTimeInterval(5)) else {
            Issue.record("expected refusal of \(report.name) in \(state)")
            return
        }
        #expect(m.job == before)
    }

    @Test(arguments: [JobState.succeeded, .failed, .canceled])
    func terminalJobsRefuseEverything(state: JobState) {
        var m = machine(state)
        for report in [DeviceReport.downloading(percent: 1), .downloaded, .failed(.download, detail: nil)] {
            guard case .refused = m.report(report, at: t0) else {
                Issue.record("terminal \(state) accepted \(report.name)")
                continue
            }
        }
        guard case .refused = m.cancel(at: t0) else { Issue.record("cancel accepted"); return }
        #expect(m.announced(version: "2.0", at: t0) == .unchanged)
        #expect(m.job.state == state)
    }

    @Test func percentOutsideRangeIsRefused() {
        var m = machine(.downloading)
        guard case .refused = m.report(.downloading(percent: 101), at: t0) else { Issue.record("accepted 101%"); return }
        guard case .refused = m.report(.downloading(percent: -1), at: t0) else { Issue.record("accepted -1%"); return }
    }

    @Test func deviceFailureRecordsReasonAndDetail() {
        var m = machine(.downloaded)
        #expect(m.report(.failed(.verify, detail: "sha256 mismatch"), at: t0) == .transitioned(from: .downloaded, to: .failed))
        #expect(m.job.failure == .verify)
        #expect(m.job.detail == "sha256 mismatch")
    }

    @Test func restartOnTheOldVersionMidDownloadAsksForTheOfferAgain() {
        var m = machine(.downloading, progress: 40)
        #expect(m.announced(version: "1.0", at: t0) == .resendOffer)
        #expect(m.job.state == .downloading)
        var q = machine(.queued)
        #expect(q.announced(version: "1.0", at: t0) == .unchanged)
    }

    @Test func restartOnTheOldVersionAfterInstallFailsTheInstall() {
        var m = machine(.installed)
        #expect(m.announced(version: "1.0", at: t0) == .transitioned(from: .installed, to: .failed))
        #expect(m.job.failure == .install)
    }

    /// A report of a step the job already took comes again (QoS 1 redelivery, a device
    /// resending unacknowledged reports after a broker restart): nothing to record.
    @Test(arguments: [
        (JobState.downloaded, DeviceReport.downloading(percent: 90)),
        (.verified, .downloading(percent: 10)),
        (.verified, .downloaded),
        (.installing, .downloaded),
        (.installing, .verified),
        (.installed, .verified),
        (.installed, .installing),
        (.installed, .downloading(percent: 100)),
    ])
    func repeatsOfStepsAlreadyTakenAreSilent(state: JobState, report: DeviceReport) {
        var m = machine(state, progress: 100)
        let before = m.job
        #expect(m.report(report, at: t0.addingTimeInterval(5)) == .unchanged)
        #expect(m.job == before)
    }

    /// A replayed retained announcement of the old version, or one from the boot that
    /// reported installing, is history: the install is not judged by it.
    @Test(arguments: [JobState.installing, .installed])
    func onlyNewsOfTheOldVersionFailsAnInstall(state: JobState) {
        var m = machine(state)
        #expect(m.announced(version: "1.0", at: t0, news: false) == .unchanged)
        #expect(m.job.state == state)
        #expect(m.announced(version: "2.0", at: t0, news: false) == .transitioned(from: state, to: .succeeded))
        var n = machine(state)
        #expect(n.announced(version: "1.0", at: t0, news: true) == .transitioned(from: state, to: .failed))
        #expect(n.job.failure == .install)
    }

    @Test func cancelAndGatewayFailure() {
        var m = machine(.downloading)
        #expect(m.fail(.timeout, detail: "no chunk requests for 10 min", at: t0) == .transitioned(from: .downloading, to: .failed))
        #expect(m.job.failure == .timeout)
        var c = machine(.notified)
        #expect(c.cancel(at: t0) == .transitioned(from: .notified, to: .canceled))
    }

    @Test func everyStateIsReachableAndTerminalStatesAreExactlyThree() {
        #expect(JobState.allCases.filter(\.isTerminal) == [.succeeded, .failed, .canceled])
    }
}
