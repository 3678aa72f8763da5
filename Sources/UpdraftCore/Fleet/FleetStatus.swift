import Foundation

/// Where one device stands in one release: what `updraft release show` prints per device,
/// answering "where is it stuck?".
public enum DeviceUpdateState: Sendable, Equatable, Codable {
    /// The release starts later.
    case pendingScheduled
    /// Waiting to be admitted: its rollout stage has not come, or the release is paused.
    case pendingRollout
    /// Waiting for the device's job of another release to finish (one job per device).
    case pendingBusy
    /// Has a job; the device is offline.
    case pendingOffline
    /// Has a job; the device said it does not accept updates right now.
    case pendingConsent
    /// Has a job and is online: waiting for its next session (gradual) or the rate limit.
    case pendingDelivery
    /// The last attempt failed; the next one is due then.
    case pendingRetry(at: Date)
    /// Offered; the device has not started.
    case notified
    case updating(JobState, percent: Int)
    case succeeded
    /// Already runs the release's firmware; no job was needed.
    case upToDate
    case failed(FailureReason?)
    case canceled
    /// Runs newer firmware and the release does not allow downgrades.
    case skippedDowngrade
}

/// Per-release counts of devices per state (Alibaba's batch view, plus where pending
/// devices wait).
public struct ReleaseStatus: Sendable, Equatable, Codable {
    public struct Entry: Sendable, Equatable, Codable {
        public var device: DeviceID
        public var state: DeviceUpdateState
        /// The device's latest job of the release.
        public var job: JobID?
        /// How many jobs the device had in this release (1 + retries and re-queues).
        public var attempts: Int
    }

    public struct Counts: Sendable, Equatable, Codable {
        public var pendingScheduled = 0
        public var pendingRollout = 0
        public var pendingBusy = 0
        public var pendingOffline = 0
        public var pendingConsent = 0
        public var pendingDelivery = 0
        public var pendingRetry = 0
        public var notified = 0
        public var updating = 0
        public var succeeded = 0
        public var upToDate = 0
        public var failed = 0
        public var canceled = 0
        public var skippedDowngrade = 0
        /// Failed devices by ``FailureReason`` raw value ("unknown" if none was recorded).
        public var failedByReason: [String: Int] = [:]
        /// Mean percent of the updating devices (downloads report percent; later steps 100).
        public var updatingPercent: Int?

        public var pending: Int {
            pendingScheduled + pendingRollout + pendingBusy + pendingOffline + pendingConsent + pendingDelivery + pendingRetry
        }
        public var total: Int { pending + notified + updating + succeeded + upToDate + failed + canceled + skippedDowngrade }
    }

    public var release: ReleaseID
    public var firmware: FirmwareRef
    public var phase: RolloutStateMachine.Phase
    public var stagePercent: Int
    public var started: Bool
    public var forced: Bool
    public var devices: [Entry]
    public var counts: Counts
}

/// Share of each version among a product's devices: the top few, then "others".
public struct VersionDistribution: Sendable, Equatable, Codable {
    public struct Share: Sendable, Equatable, Codable {
        public var version: FirmwareVersion
        public var devices: Int
        /// Of all the product's devices (unknown version included).
        public var fraction: Double
    }

    public var product: ProductID
    public var total: Int
    public var top: [Share]
    /// Devices on versions outside the top.
    public var others: Int
    public var othersFraction: Double
    /// Devices of the product that have not reported a version.
    public var unknown: Int
}

public enum FleetStatus {
    /// The status of one release, or `nil` if the snapshot does not have it.
    public static func release(_ id: ReleaseID, fleet: FleetSnapshot, at now: Date) -> ReleaseStatus? {
        var index = FleetIndex(fleet, now: now)
        guard let release = index.releases[id] else { return nil }
        let started = now >= release.startsAt
        // Before the start, show the devices it will claim when it starts.
        if !started { index.resolveClaims(at: release.startsAt) }
        let history = index.history[id] ?? [:]
        let members = Set(history.keys).union(index.deviceOrder.filter { index.isClaimed($0, by: id) })
        var entries: [ReleaseStatus.Entry] = []
        var counts = ReleaseStatus.Counts()
        var percents: [Int] = []
        for deviceID in members.sorted() {
            let jobs = history[deviceID] ?? []
            let state = classify(deviceID, jobs: jobs, release: release, index: index, started: started)
            entries.append(ReleaseStatus.Entry(device: deviceID, state: state, job: jobs.last?.id, attempts: jobs.count))
            switch state {
            case .pendingScheduled: counts.pendingScheduled += 1
            case .pendingRollout: counts.pendingRollout += 1
            case .pendingBusy: counts.pendingBusy += 1
            case .pendingOffline: counts.pendingOffline += 1
            case .pendingConsent: counts.pendingConsent += 1
            case .pendingDelivery: counts.pendingDelivery += 1
            case .pendingRetry: counts.pendingRetry += 1
            case .notified: counts.notified += 1
            case .updating(_, let percent):
                counts.updating += 1
                percents.append(percent)
            case .succeeded: counts.succeeded += 1
            case .upToDate: counts.upToDate += 1
            case .failed(let reason):
                counts.failed += 1
                counts.failedByReason[reason?.rawValue ?? "unknown", default: 0] += 1
            case .canceled: counts.canceled += 1
            case .skippedDowngrade: counts.skippedDowngrade += 1
            }
        }
        if !percents.isEmpty { counts.updatingPercent = percents.reduce(0, +) / percents.count }
        return ReleaseStatus(
            release: id, firmware: release.firmware, phase: release.rollout.phase, stagePercent: release.rollout.stagePercent,
            started: started, forced: release.isForced, devices: entries, counts: counts)
    }

    static func classify(_ deviceID: DeviceID, jobs: [Job], release: FleetRelease, index: FleetIndex, started: Bool) -> DeviceUpdateState {
        let device = index.devices[deviceID]
        let claimed = index.isClaimed(deviceID, by: release.id)
        guard let latest = jobs.last else {
            switch index.need(device, release) {
            case .onTarget: return .upToDate
            case .downgrade: return .skippedDowngrade
            case .update:
                if !started { return .pendingScheduled }
                if let other = index.active[deviceID], other.releaseID != release.id { return .pendingBusy }
                return .pendingRollout
            }
        }
        switch latest.state {
        case .queued, .notified:
            guard let device, device.device.online else { return .pendingOffline }
            if !device.device.acceptsUpdates { return .pendingConsent }
            if latest.state == .notified { return .notified }
            return release.rollout.phase == .running ? .pendingDelivery : .pendingRollout
        case .downloading, .downloaded, .verified, .installing, .installed:
            return .updating(latest.state, percent: latest.state == .downloading ? latest.progress : 100)
        case .succeeded:
            return .succeeded
        case .failed:
            if claimed, !release.rollout.phase.isFinal {
                switch index.retryState(jobs, policy: release.policy.retry) {
                case .due: return .pendingRetry(at: index.now)
                case .waiting(let until, _): return .pendingRetry(at: until)
                case .exhausted: break
                }
            }
            return .failed(latest.failure)
        case .canceled:
            if claimed, !release.rollout.phase.isFinal, index.need(device, release) == .update { return .pendingRollout }
            return .canceled
        }
    }

    /// The version distribution of one product: the `top` most common versions (ties: by
    /// higher catalog sequence when known, then by name), then everything else as "others".
    public static func versionDistribution(
        product: ProductID, devices: [Device], top: Int = 5, sequenceOf: (FirmwareVersion) -> Int64? = { _ in nil }
    ) -> VersionDistribution {
        let ofProduct = devices.filter { $0.product == product }
        var perVersion: [FirmwareVersion: Int] = [:]
        var unknown = 0
        for device in ofProduct {
            if let version = device.version { perVersion[version, default: 0] += 1 } else { unknown += 1 }
        }
        let total = ofProduct.count
        let ranked = perVersion.sorted { a, b in
            if a.value != b.value { return a.value > b.value }
            let sa = sequenceOf(a.key) ?? .min
            let sb = sequenceOf(b.key) ?? .min
            if sa != sb { return sa > sb }
            return a.key < b.key
        }
        func fraction(_ n: Int) -> Double { total == 0 ? 0 : Double(n) / Double(total) }
        let shown = ranked.prefix(max(0, top)).map { VersionDistribution.Share(version: $0.key, devices: $0.value, fraction: fraction($0.value)) }
        let others = ranked.dropFirst(max(0, top)).reduce(0) { $0 + $1.value }
        return VersionDistribution(
            product: product, total: total, top: shown, others: others, othersFraction: fraction(others), unknown: unknown)
    }

    /// One distribution per product, by product id.
    public static func versionDistributions(devices: [Device], top: Int = 5) -> [VersionDistribution] {
        Set(devices.compactMap(\.product)).sorted().map { versionDistribution(product: $0, devices: devices, top: top) }
    }
}
