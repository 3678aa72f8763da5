import Foundation
import UpdraftCore

/// Where a release stands, fleet or one-off, in one shape: what `release show` and
/// `release watch` print, and their `--json` (field names documented in README "JSON output").
public struct ReleaseReport: Codable, Sendable {
    public struct DeviceRow: Codable, Sendable {
        public var device: String
        /// pending_scheduled, pending_rollout, pending_busy, pending_offline, pending_consent,
        /// pending_delivery, pending_retry, notified, updating, succeeded, up_to_date, failed,
        /// canceled, skipped_downgrade (a one-off release: the job state).
        public var state: String
        public var stateDetail: String
        public var job: String?
        public var progress: Int?
        public var attempts: Int?
        public var failure: String?
        public var detail: String?
        enum CodingKeys: String, CodingKey {
            case device, state, stateDetail = "state_detail", job, progress, attempts, failure, detail
        }
    }

    public var release: String
    public var firmware: String
    /// one-off, fleet, verification or lock.
    public var kind: String
    public var target: String
    /// running, paused, completed, aborted or canceled.
    public var phase: String
    public var phaseDetail: String
    public var stagePercent: Int
    public var started: Bool
    public var forced: Bool
    public var total: Int
    public var counts: [String: Int]
    public var failedByReason: [String: Int]
    /// The mean download percent of the devices updating, when any are.
    public var updatingPercent: Int?
    public var devices: [DeviceRow]

    enum CodingKeys: String, CodingKey {
        case release, firmware, kind, target, phase, phaseDetail = "phase_detail", stagePercent = "stage_percent", started
        case forced, total, counts, failedByReason = "failed_by_reason", updatingPercent = "updating_percent", devices
    }

    /// Nothing more will happen to it.
    public var finished: Bool { ["completed", "aborted", "canceled"].contains(phase) }
    /// Why a finished release did not go well (aborted, canceled, failures), for a non-zero exit.
    public var trouble: String? {
        guard finished else { return nil }
        let failed = counts["failed", default: 0]
        if phase == "aborted" { return "release \(release) was aborted: \(phaseDetail)" }
        if phase == "canceled" { return "release \(release) was canceled\(failed > 0 ? " (\(failed) failed)" : "")" }
        if failed > 0 { return "release \(release) ended with \(failed) failed of \(total): see `updraft release show \(release)`" }
        return nil
    }

    public static func fleetView(_ status: ReleaseStatus, _ fleet: FleetRelease) -> ReleaseReport {
        let phase: String =
            switch status.phase {
            case .running: "running"
            case .paused: "paused"
            case .completed: "completed"
            case .aborted: "aborted"
            case .canceled: "canceled"
            }
        let rows = status.devices.map { entry in
            DeviceRow(
                device: entry.device.rawValue, state: stateKey(entry.state), stateDetail: describe(entry.state), job: entry.job?.rawValue,
                progress: { if case .updating(_, let p) = entry.state { p } else { nil } }(), attempts: entry.attempts)
        }
        return ReleaseReport(
            release: status.release.rawValue, firmware: status.firmware.id.rawValue, kind: fleet.kind.rawValue,
            target: fleet.target.summary, phase: phase, phaseDetail: describe(status.phase), stagePercent: status.stagePercent,
            started: status.started, forced: status.forced, total: status.counts.total,
            counts: Dictionary(uniqueKeysWithValues: countKeys(status.counts)), failedByReason: status.counts.failedByReason,
            updatingPercent: status.counts.updatingPercent, devices: rows)
    }

    public static func oneOffView(_ release: Release, _ jobs: [Job]) -> ReleaseReport {
        let counts = Dictionary(grouping: jobs, by: \.state.rawValue).mapValues(\.count)
        let active = jobs.contains { $0.state.isActive }
        let failed = jobs.filter { $0.state == .failed }
        let phase = active ? "running" : (jobs.allSatisfy { $0.state == .canceled } && !jobs.isEmpty ? "canceled" : "completed")
        let rows = jobs.map { job in
            DeviceRow(
                device: job.deviceID.rawValue, state: job.state.rawValue, stateDetail: job.state.rawValue, job: job.id.rawValue,
                progress: job.progress, failure: job.failure?.rawValue, detail: job.detail)
        }
        return ReleaseReport(
            release: release.id.rawValue, firmware: release.firmwareID.rawValue, kind: "one-off", target: release.target.summary,
            phase: phase, phaseDetail: active ? "\(jobs.filter { $0.state.isActive }.count) jobs active" : phase, stagePercent: 100,
            started: true, forced: false, total: jobs.count, counts: counts,
            failedByReason: Dictionary(grouping: failed, by: { $0.failure?.rawValue ?? "unknown" }).mapValues(\.count),
            updatingPercent: nil, devices: rows)
    }
}

public func countKeys(_ c: ReleaseStatus.Counts) -> [(String, Int)] {
    [
        ("succeeded", c.succeeded), ("updating", c.updating), ("notified", c.notified),
        ("pending_offline", c.pendingOffline), ("pending_consent", c.pendingConsent), ("pending_delivery", c.pendingDelivery),
        ("pending_scheduled", c.pendingScheduled), ("pending_rollout", c.pendingRollout), ("pending_busy", c.pendingBusy),
        ("pending_retry", c.pendingRetry), ("failed", c.failed), ("canceled", c.canceled), ("up_to_date", c.upToDate),
        ("skipped_downgrade", c.skippedDowngrade),
    ]
}

public func stateKey(_ state: DeviceUpdateState) -> String {
    switch state {
    case .pendingScheduled: "pending_scheduled"
    case .pendingRollout: "pending_rollout"
    case .pendingBusy: "pending_busy"
    case .pendingOffline: "pending_offline"
    case .pendingConsent: "pending_consent"
    case .pendingDelivery: "pending_delivery"
    case .pendingRetry: "pending_retry"
    case .notified: "notified"
    case .updating: "updating"
    case .succeeded: "succeeded"
    case .upToDate: "up_to_date"
    case .failed: "failed"
    case .canceled: "canceled"
    case .skippedDowngrade: "skipped_downgrade"
    }
}

public func describe(_ phase: RolloutStateMachine.Phase) -> String {
    switch phase {
    case .running: "running"
    case .paused(.operatorRequest): "paused (operator)"
    case .paused(.errorThreshold(let failed, let of)): "paused (\(failed) of \(of) failed)"
    case .completed: "completed"
    case .aborted(let failed, let of): "aborted (\(failed) of \(of) failed)"
    case .canceled: "canceled"
    }
}

public func describe(_ state: DeviceUpdateState) -> String {
    switch state {
    case .pendingScheduled: "pending (scheduled)"
    case .pendingRollout: "pending (rollout stage or paused)"
    case .pendingBusy: "pending (busy with another release's job)"
    case .pendingOffline: "pending (offline)"
    case .pendingConsent: "pending (device does not accept updates now)"
    case .pendingDelivery: "pending (next session or rate limit)"
    case .pendingRetry(let at): "pending (retry at \(at.formatted(.iso8601)))"
    case .notified: "notified"
    case .updating(let state, let percent): "updating (\(state.rawValue), \(percent)%)"
    case .succeeded: "succeeded"
    case .upToDate: "up to date"
    case .failed(let reason): "failed (\(reason?.rawValue ?? "unknown"))"
    case .canceled: "canceled"
    case .skippedDowngrade: "skipped (would downgrade; --allow-downgrade)"
    }
}

