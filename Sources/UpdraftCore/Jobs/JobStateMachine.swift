import Foundation

/// The one job state machine, shared by every protocol. Event methods mutate the job and
/// return what happened; the caller records it and performs any action.
public struct JobStateMachine: Sendable {
    public private(set) var job: Job

    public init(_ job: Job) { self.job = job }

    public enum Outcome: Sendable, Equatable {
        /// Accepted: the job moved (or its percent changed). Record it.
        case transitioned(from: JobState, to: JobState)
        /// A repeat of what is already recorded (MQTT QoS 1 may deliver twice). Nothing to do.
        case unchanged
        /// The device should be sent the offer again (it restarted before finishing).
        case resendOffer
        /// Impossible here: refused and recorded, the job is untouched.
        case refused(String)
    }

    /// The gateway sent the offer.
    public mutating func offered(at now: Date) -> Outcome {
        switch job.state {
        case .queued: return move(to: .notified, at: now)
        case .notified, .downloading, .downloaded, .verified, .installing, .installed: return .unchanged
        case .succeeded, .failed, .canceled: return refuseTerminal("offer")
        }
    }

    /// A device reported progress on this job.
    public mutating func report(_ report: DeviceReport, at now: Date) -> Outcome {
        let state = job.state
        if state.isTerminal { return refuseTerminal("report '\(report.name)'") }
        switch report {
        case .downloading(let percent):
            guard (0...100).contains(percent) else { return .refused("percent \(percent) is outside 0...100") }
            switch state {
            case .queued, .notified, .downloading:
                if state == .downloading && job.progress == percent { return .unchanged }
                job.progress = percent
                return move(to: .downloading, at: now, force: true)
            default:
                // Past the download: a late or redelivered report, already applied.
                return .unchanged
            }
        case .downloaded:
            return advance(to: .downloaded, from: [.queued, .notified, .downloading], report: report, at: now) {
                $0.progress = 100
            }
        case .verified:
            return advance(to: .verified, from: [.downloaded], report: report, at: now)
        case .installing:
            return advance(to: .installing, from: [.verified], report: report, at: now)
        case .installed:
            return advance(to: .installed, from: [.installing], report: report, at: now)
        case .failed(let reason, let detail):
            job.failure = reason
            job.detail = detail
            return move(to: .failed, at: now)
        }
    }

    /// The device announced the version it runs: the only way a job succeeds.
    ///
    /// - Parameter news: the announcement was made after everything the gateway heard
    ///   from the device (``Announcement/Recency/news``). Only news of another version
    ///   fails an install: a replayed retained announcement, or one from the boot that
    ///   reported `installing`, is history, not the device restarting.
    public mutating func announced(version: FirmwareVersion, at now: Date, news: Bool = true) -> Outcome {
        let state = job.state
        if state.isTerminal { return .unchanged }
        if version == job.targetVersion {
            job.progress = 100
            return move(to: .succeeded, at: now)
        }
        switch state {
        case .installing, .installed:
            if !news { return .unchanged }
            job.failure = .install
            job.detail = "device restarted on version \(version.rawValue), expected \(job.targetVersion.rawValue)"
            return move(to: .failed, at: now)
        case .queued:
            return .unchanged
        default:
            // Restarted mid-download: it may resume, so tell it again.
            return .resendOffer
        }
    }

    /// The gateway gave up on the device (timeout) or an operator canceled.
    public mutating func fail(_ reason: FailureReason, detail: String, at now: Date) -> Outcome {
        if job.state.isTerminal { return refuseTerminal("failure") }
        job.failure = reason
        job.detail = detail
        return move(to: .failed, at: now)
    }

    public mutating func cancel(at now: Date) -> Outcome {
        if job.state.isTerminal { return refuseTerminal("cancel") }
        return move(to: .canceled, at: now)
    }

    private mutating func advance(
        to next: JobState, from allowed: Set<JobState>, report: DeviceReport, at now: Date,
        update: (inout Job) -> Void = { _ in }
    ) -> Outcome {
        // A repeat of a step the job already took (QoS 1 redelivery, a device resending
        // after a broker restart) is harmless and silent.
        if job.state == next || job.state.isPast(next) { return .unchanged }
        guard allowed.contains(job.state) else { return refuse(report, in: job.state) }
        update(&job)
        return move(to: next, at: now)
    }

    private mutating func move(to next: JobState, at now: Date, force: Bool = false) -> Outcome {
        let previous = job.state
        if previous == next && !force { return .unchanged }
        job.state = next
        job.updatedAt = now
        return .transitioned(from: previous, to: next)
    }

    private func refuse(_ report: DeviceReport, in state: JobState) -> Outcome {
        .refused("report '\(report.name)' is not possible while the job is \(state.rawValue)")
    }

    private func refuseTerminal(_ what: String) -> Outcome {
        .refused("\(what) after the job ended (\(job.state.rawValue))")
    }
}

extension JobState {
    /// The order devices report in; terminal states have none.
    private var step: Int? {
        switch self {
        case .queued: 0
        case .notified: 1
        case .downloading: 2
        case .downloaded: 3
        case .verified: 4
        case .installing: 5
        case .installed: 6
        case .succeeded, .failed, .canceled: nil
        }
    }

    /// The job went through `other` on its way here.
    func isPast(_ other: JobState) -> Bool {
        guard let step, let otherStep = other.step else { return false }
        return step > otherStep
    }
}

extension DeviceReport {
    public var name: String {
        switch self {
        case .downloading: "downloading"
        case .downloaded: "downloaded"
        case .verified: "verified"
        case .installing: "installing"
        case .installed: "installed"
        case .failed: "failed"
        }
    }
}
