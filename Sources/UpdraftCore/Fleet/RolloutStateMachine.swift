import Foundation

/// How a release widens: cumulative stage percentages, and the thresholds that move it on
/// or stop it (hawkBit's rollout groups, AWS IoT Jobs' abort criteria).
public struct RolloutPolicy: Sendable, Equatable, Codable {
    /// Cumulative percentages of the release's devices, strictly increasing, ending at 100.
    public var stages: [Int]
    /// Advance on its own once this fraction (0...1) of the current stage's devices has
    /// succeeded. `nil`: only an operator advances.
    public var successThreshold: Double?
    /// Stop once more than this fraction (0...1) of the devices (of the current stage, or of
    /// all admitted so far) has failed. `nil`: never stop on its own.
    public var errorThreshold: Double?
    public var onError: ErrorAction
    /// A stage runs at least this long before it advances on its own (a soak time), so a
    /// failure that shows only after a while can still stop the rollout.
    public var minimumStageDuration: TimeInterval

    public enum ErrorAction: String, Sendable, Codable, CaseIterable {
        /// Stop admitting devices; an operator may resume.
        case pause
        /// Stop for good and cancel the jobs that have not started installing.
        case abort
    }

    public init(
        stages: [Int] = [100], successThreshold: Double? = nil, errorThreshold: Double? = nil,
        onError: ErrorAction = .pause, minimumStageDuration: TimeInterval = 0
    ) {
        (self.stages, self.successThreshold, self.errorThreshold) = (stages, successThreshold, errorThreshold)
        (self.onError, self.minimumStageDuration) = (onError, minimumStageDuration)
    }

    /// Everything at once (still subject to the batch policy's pacing).
    public static let single = RolloutPolicy()

    public func validate() throws(UpdraftError) {
        guard let last = stages.last, last == 100 else {
            throw UpdraftError("invalid_stages", "Rollout stages must end at 100 (got \(stages)); for example --stages 1,10,50,100.")
        }
        guard stages.allSatisfy({ (1...100).contains($0) }), zip(stages, stages.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw UpdraftError("invalid_stages", "Rollout stages must be percentages from 1 to 100 in increasing order (got \(stages)).")
        }
        for (name, value) in [("success", successThreshold), ("error", errorThreshold)] {
            if let value, !(0...1).contains(value) {
                throw UpdraftError("invalid_threshold", "The \(name) threshold is a fraction from 0 to 1 (got \(value)).")
            }
        }
        guard minimumStageDuration >= 0 else {
            throw UpdraftError("invalid_stage_duration", "The minimum stage duration cannot be negative (got \(minimumStageDuration) s).")
        }
    }
}

/// The rollout of one release, as a struct whose event methods return the change for the
/// caller to record. Inputs: job outcome counts (``evaluate(_:at:canComplete:)``), operator
/// commands (``apply(_:at:release:)``) and time. It never touches jobs itself: the planner
/// admits devices up to ``quota(population:)`` while ``isAdmitting``.
public struct RolloutStateMachine: Sendable, Equatable, Codable {
    public enum Phase: Sendable, Equatable, Codable {
        case running
        case paused(PauseReason)
        case completed
        case aborted(failed: Int, of: Int)
        case canceled

        public var isFinal: Bool {
            switch self {
            case .aborted, .canceled: true
            case .running, .paused, .completed: false
            }
        }
    }

    public enum PauseReason: Sendable, Equatable, Codable {
        case operatorRequest
        case errorThreshold(failed: Int, of: Int)
    }

    public enum Command: String, Sendable, Codable, CaseIterable {
        case advance, pause, resume, cancel
    }

    public enum Change: Sendable, Equatable {
        case advanced(from: Int, to: Int, automatic: Bool)
        case paused(PauseReason)
        case resumed
        case aborted(failed: Int, of: Int)
        case completed
        case canceled
    }

    /// Devices counted for the thresholds. A device counts once, by its latest job.
    public struct Tally: Sendable, Equatable {
        /// Devices that got a job of this release.
        public var admitted: Int
        public var succeeded: Int
        /// Devices whose latest attempt failed (awaiting a retry or not). Failures from
        /// before an operator resumed an error pause are not counted.
        public var failed: Int
        /// Devices with no final outcome yet: in flight, awaiting a retry, or re-queued.
        public var unsettled: Int

        public init(admitted: Int = 0, succeeded: Int = 0, failed: Int = 0, unsettled: Int = 0) {
            (self.admitted, self.succeeded, self.failed, self.unsettled) = (admitted, succeeded, failed, unsettled)
        }
    }

    public struct Counts: Sendable, Equatable {
        /// Devices first admitted during the current stage.
        public var stage: Tally
        /// Every device admitted so far.
        public var total: Tally
        /// Devices the release claims and that need the update but are not admitted yet.
        public var waiting: Int

        public init(stage: Tally, total: Tally, waiting: Int) {
            (self.stage, self.total, self.waiting) = (stage, total, waiting)
        }
    }

    public private(set) var policy: RolloutPolicy
    /// Index into ``RolloutPolicy/stages``.
    public private(set) var stage: Int
    public private(set) var phase: Phase
    /// When each stage reached so far began; a device belongs to the stage during which its
    /// first job of the release was created.
    public private(set) var stageStartedAt: [Date]
    /// After an operator resumes an error pause, only failures from then on count, or the
    /// same failures would pause it again at once.
    public private(set) var failuresCountedFrom: Date?

    public init(policy: RolloutPolicy, startsAt: Date) {
        self.policy = policy
        self.stage = 0
        self.phase = .running
        self.stageStartedAt = [startsAt]
        self.failuresCountedFrom = nil
    }

    public var stagePercent: Int { policy.stages[stage] }
    public var isLastStage: Bool { stage == policy.stages.count - 1 }
    /// New jobs may be created only while running.
    public var isAdmitting: Bool { phase == .running }

    /// How many devices may be admitted in total by the end of the current stage, out of a
    /// population of `population`. Each stage admits at least one more device than the one
    /// before while any remain, so small fleets still move through every stage.
    public func quota(population: Int) -> Int {
        guard population > 0 else { return 0 }
        var quota = 0
        for percent in policy.stages[...stage] {
            let share = (Double(percent) * Double(population) / 100).rounded(.up)
            quota = min(population, max(quota + 1, Int(share)))
        }
        return quota
    }

    /// The stage during which something that happened at `date` happened.
    public func stage(at date: Date) -> Int {
        stageStartedAt.lastIndex { $0 <= date } ?? 0
    }

    /// Whether a failure recorded at `date` counts toward the error threshold.
    public func countsFailure(at date: Date) -> Bool {
        guard let from = failuresCountedFrom else { return true }
        return date >= from
    }

    /// Feeds the current outcome counts. `canComplete` is true for static batches: a dynamic
    /// release never completes on its own, since devices may still join it.
    public mutating func evaluate(_ counts: Counts, at now: Date, canComplete: Bool) -> Change? {
        guard phase == .running else { return nil }
        if let threshold = policy.errorThreshold {
            for tally in [counts.stage, counts.total] where tally.admitted > 0 {
                if Double(tally.failed) / Double(tally.admitted) > threshold {
                    switch policy.onError {
                    case .pause:
                        let reason = PauseReason.errorThreshold(failed: tally.failed, of: tally.admitted)
                        phase = .paused(reason)
                        return .paused(reason)
                    case .abort:
                        phase = .aborted(failed: tally.failed, of: tally.admitted)
                        return .aborted(failed: tally.failed, of: tally.admitted)
                    }
                }
            }
        }
        if canComplete && counts.waiting == 0 && counts.total.unsettled == 0 {
            phase = .completed
            return .completed
        }
        guard !isLastStage, let threshold = policy.successThreshold, let basis = successBasis(counts) else { return nil }
        guard Double(basis.succeeded) / Double(basis.admitted) >= threshold else { return nil }
        guard now >= stageStartedAt[stage] + policy.minimumStageDuration else { return nil }
        return moveToNextStage(at: now, automatic: true)
    }

    /// When evaluating again could advance the stage with no other input: the end of the
    /// soak time, if the success threshold is already met.
    public func wakeup(_ counts: Counts, after now: Date) -> Date? {
        guard phase == .running, !isLastStage, let threshold = policy.successThreshold, let basis = successBasis(counts),
            Double(basis.succeeded) / Double(basis.admitted) >= threshold
        else { return nil }
        let end = stageStartedAt[stage] + policy.minimumStageDuration
        return end > now ? end : nil
    }

    /// The devices a stage's success is measured on: its own, or, when it had none to admit
    /// because earlier stages took them all, everyone admitted. `nil` while there is nothing
    /// to measure yet (devices still waiting to be admitted, or none at all).
    private func successBasis(_ counts: Counts) -> Tally? {
        if counts.stage.admitted > 0 { return counts.stage }
        if counts.waiting == 0 && counts.total.admitted > 0 { return counts.total }
        return nil
    }

    /// An operator command. Returns `nil` when the release is already where the command
    /// would put it; throws when the command makes no sense in the current phase.
    public mutating func apply(_ command: Command, at now: Date, release: ReleaseID) throws(UpdraftError) -> Change? {
        switch (command, phase) {
        case (.advance, .running):
            guard !isLastStage else {
                throw UpdraftError("rollout_last_stage", "Release \(release) is already at its last stage (\(stagePercent)%); there is nothing to advance.")
            }
            return moveToNextStage(at: now, automatic: false)
        case (.advance, .paused):
            throw UpdraftError("rollout_paused", "Release \(release) is paused. Resume it first with `updraft release resume \(release)`, then advance.")
        case (.pause, .running):
            phase = .paused(.operatorRequest)
            return .paused(.operatorRequest)
        case (.pause, .paused), (.resume, .running), (.cancel, .canceled):
            return nil
        case (.resume, .paused(let reason)):
            if case .errorThreshold = reason { failuresCountedFrom = now }
            phase = .running
            return .resumed
        case (.cancel, .running), (.cancel, .paused), (.cancel, .completed):
            // Canceling a completed release withdraws it: its devices fall back to the rules.
            phase = .canceled
            return .canceled
        case (.cancel, .aborted):
            return nil
        case (_, .completed):
            throw UpdraftError("rollout_completed", "Release \(release) has completed. To withdraw it, use `updraft release cancel \(release)`.")
        case (_, .aborted), (_, .canceled):
            throw UpdraftError(
                "rollout_stopped", "Release \(release) was \(phase == .canceled ? "canceled" : "aborted") and cannot be changed. Create a new release instead.")
        }
    }

    private mutating func moveToNextStage(at now: Date, automatic: Bool) -> Change {
        let from = stage
        stage += 1
        stageStartedAt.append(now)
        return .advanced(from: from, to: stage, automatic: automatic)
    }

    enum CodingKeys: String, CodingKey {
        case policy, stage, phase, stageStartedAt = "stage_started_at", failuresCountedFrom = "failures_counted_from"
    }
}
