import Foundation
import UpdraftApp
import UpdraftCore

/// Where a release stands, fleet or one-off, in one shape: what `release show` and
/// `release watch` print, and their `--json` (field names documented in README "JSON output").
struct ReleaseView: Encodable {
    struct DeviceRow: Encodable {
        var device: String
        /// pending_scheduled, pending_rollout, pending_busy, pending_offline, pending_consent,
        /// pending_delivery, pending_retry, notified, updating, succeeded, up_to_date, failed,
        /// canceled, skipped_downgrade (a one-off release: the job state).
        var state: String
        var stateDetail: String
        var job: String?
        var progress: Int?
        var attempts: Int?
        var failure: String?
        var detail: String?
        enum CodingKeys: String, CodingKey {
            case device, state, stateDetail = "state_detail", job, progress, attempts, failure, detail
        }
    }

    var release: String
    var firmware: String
    /// one-off, fleet, verification or lock.
    var kind: String
    var target: String
    /// running, paused, completed, aborted or canceled.
    var phase: String
    var phaseDetail: String
    var stagePercent: Int
    var started: Bool
    var forced: Bool
    var total: Int
    var counts: [String: Int]
    var failedByReason: [String: Int]
    /// The mean download percent of the devices updating, when any are.
    var updatingPercent: Int?
    var devices: [DeviceRow]

    enum CodingKeys: String, CodingKey {
        case release, firmware, kind, target, phase, phaseDetail = "phase_detail", stagePercent = "stage_percent", started
        case forced, total, counts, failedByReason = "failed_by_reason", updatingPercent = "updating_percent", devices
    }

    /// Nothing more will happen to it.
    var finished: Bool { ["completed", "aborted", "canceled"].contains(phase) }
    /// Why a finished release did not go well (aborted, canceled, failures), for a non-zero exit.
    var trouble: String? {
        guard finished else { return nil }
        let failed = counts["failed", default: 0]
        if phase == "aborted" { return "release \(release) was aborted: \(phaseDetail)" }
        if phase == "canceled" { return "release \(release) was canceled\(failed > 0 ? " (\(failed) failed)" : "")" }
        if failed > 0 { return "release \(release) ended with \(failed) failed of \(total): see `updraft release show \(release)`" }
        return nil
    }

    static func load(_ id: ReleaseID, _ ops: Operations) async throws -> ReleaseView {
        if let fleet = try await ops.store.fleetRelease(id) {
            return fleetView(try await ops.fleetReleaseStatus(id), fleet)
        }
        guard let release = try await ops.store.releases().first(where: { $0.id == id }) else {
            throw UpdraftError.notFound("release", id.rawValue, hint: "List releases with `updraft release list`.")
        }
        return oneOffView(release, try await ops.releaseStatus(id))
    }

    static func fleetView(_ status: ReleaseStatus, _ fleet: FleetRelease) -> ReleaseView {
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
        return ReleaseView(
            release: status.release.rawValue, firmware: status.firmware.id.rawValue, kind: fleet.kind.rawValue,
            target: fleet.target.summary, phase: phase, phaseDetail: describe(status.phase), stagePercent: status.stagePercent,
            started: status.started, forced: status.forced, total: status.counts.total,
            counts: Dictionary(uniqueKeysWithValues: countKeys(status.counts)), failedByReason: status.counts.failedByReason,
            updatingPercent: status.counts.updatingPercent, devices: rows)
    }

    static func oneOffView(_ release: Release, _ jobs: [Job]) -> ReleaseView {
        let counts = Dictionary(grouping: jobs, by: \.state.rawValue).mapValues(\.count)
        let active = jobs.contains { $0.state.isActive }
        let failed = jobs.filter { $0.state == .failed }
        let phase = active ? "running" : (jobs.allSatisfy { $0.state == .canceled } && !jobs.isEmpty ? "canceled" : "completed")
        let rows = jobs.map { job in
            DeviceRow(
                device: job.deviceID.rawValue, state: job.state.rawValue, stateDetail: job.state.rawValue, job: job.id.rawValue,
                progress: job.progress, failure: job.failure?.rawValue, detail: job.detail)
        }
        return ReleaseView(
            release: release.id.rawValue, firmware: release.firmwareID.rawValue, kind: "one-off", target: release.target.summary,
            phase: phase, phaseDetail: active ? "\(jobs.filter { $0.state.isActive }.count) jobs active" : phase, stagePercent: 100,
            started: true, forced: false, total: jobs.count, counts: counts,
            failedByReason: Dictionary(grouping: failed, by: { $0.failure?.rawValue ?? "unknown" }).mapValues(\.count),
            updatingPercent: nil, devices: rows)
    }

    func printText() {
        print("release:  \(release) (\(kind): \(target))")
        print("firmware: \(firmware)\(forced ? " (forced)" : "")")
        print("phase:    \(phaseDetail)\(started ? "" : " (not started yet)")")
        if kind != "one-off" { print("stage:    \(stagePercent)%") }
        print("devices:  \(total)")
        for (name, count) in counts.sorted(by: { $0.key < $1.key }) where count > 0 { print("  \(name): \(count)") }
        for (reason, count) in failedByReason.sorted(by: { $0.key < $1.key }) { print("  failed (\(reason)): \(count)") }
        guard !devices.isEmpty else { return }
        print("DEVICE\tSTATE\tJOB\t\(kind == "one-off" ? "PROGRESS" : "ATTEMPTS")")
        for row in devices {
            var line = "\(row.device)\t\(row.stateDetail)\t\(row.job ?? "-")\t"
            line += kind == "one-off" ? "\(row.progress ?? 0)%" : "\(row.attempts ?? 0)"
            if let failure = row.failure { line += "\t\(failure): \(row.detail ?? "")" }
            print(line)
        }
    }

    /// The board `release watch` draws.
    func boardLines() -> [String] {
        var lines = ["release \(release) · \(firmware) · \(kind) · \(phaseDetail)\(kind == "one-off" ? "" : " · stage \(stagePercent)%")"]
        let total = max(self.total, 1)
        // Succeeded, failed (and a fleet release's updating) always; the other states while they count.
        let always = kind == "one-off" ? ["succeeded", "failed"] : ["succeeded", "updating", "failed"]
        let rest = counts.keys.filter { !always.contains($0) && counts[$0, default: 0] > 0 }.sorted()
        for name in always + rest {
            let count = counts[name, default: 0]
            var label = "\(name) \(count)"
            if name == "updating", let updatingPercent { label += " (mean \(updatingPercent)%)" }
            lines.append(ProgressBoard.bar(Double(count) / Double(total), label))
        }
        return lines
    }
}

func countKeys(_ c: ReleaseStatus.Counts) -> [(String, Int)] {
    [
        ("succeeded", c.succeeded), ("updating", c.updating), ("notified", c.notified),
        ("pending_offline", c.pendingOffline), ("pending_consent", c.pendingConsent), ("pending_delivery", c.pendingDelivery),
        ("pending_scheduled", c.pendingScheduled), ("pending_rollout", c.pendingRollout), ("pending_busy", c.pendingBusy),
        ("pending_retry", c.pendingRetry), ("failed", c.failed), ("canceled", c.canceled), ("up_to_date", c.upToDate),
        ("skipped_downgrade", c.skippedDowngrade),
    ]
}

func stateKey(_ state: DeviceUpdateState) -> String {
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

/// JSON for `--json`: sorted keys, ISO 8601 times, one document per line.
func jsonText<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
