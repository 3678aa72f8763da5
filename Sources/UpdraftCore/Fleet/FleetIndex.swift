import Foundation

/// Everything the planner and the status report need, as of one tick.
public struct FleetSnapshot: Sendable, Equatable {
    /// Every device the rules may apply to, and every device that has an active job.
    public var devices: [FleetDevice]
    /// Every fleet release that is not archived, lock releases included. Jobs of releases
    /// not listed here (made by ``ReleasePlanner``) are left alone.
    public var releases: [FleetRelease]
    /// Every job of those releases, in any state (retries and stage membership are read
    /// from the history), plus the active job of every device.
    public var jobs: [Job]
    /// The engine's activity record of each active job.
    public var activity: [JobID: JobActivity]

    public init(devices: [FleetDevice], releases: [FleetRelease], jobs: [Job] = [], activity: [JobID: JobActivity] = [:]) {
        self.devices = devices
        self.releases = releases
        self.jobs = jobs
        self.activity = activity
    }
}

/// Whether a device needs a release's firmware.
enum UpdateNeed: Equatable {
    case update
    case onTarget
    /// The device runs a newer firmware and the release does not allow downgrades.
    case downgrade
}

/// What is left for a device whose latest job of a release failed.
enum RetryState: Equatable {
    case due(attempt: Int)
    case waiting(until: Date, attempt: Int)
    case exhausted
}

/// The snapshot, indexed, with the precedence decision of every device.
struct FleetIndex {
    let now: Date
    let devices: [DeviceID: FleetDevice]
    let deviceOrder: [DeviceID]
    var releases: [ReleaseID: FleetRelease]
    /// Oldest first, so earlier releases are served first when they compete for a rate.
    let releaseOrder: [ReleaseID]
    /// Jobs per release and device, oldest first.
    let history: [ReleaseID: [DeviceID: [Job]]]
    let active: [DeviceID: Job]
    let activity: [JobID: JobActivity]
    private(set) var claims: [DeviceID: DesiredFirmware] = [:]

    init(_ fleet: FleetSnapshot, now: Date) {
        self.now = now
        var devices: [DeviceID: FleetDevice] = [:]
        for device in fleet.devices { devices[device.id] = device }
        self.devices = devices
        deviceOrder = devices.keys.sorted()
        var releases: [ReleaseID: FleetRelease] = [:]
        for release in fleet.releases { releases[release.id] = release }
        self.releases = releases
        releaseOrder = releases.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }.map(\.id)
        var history: [ReleaseID: [DeviceID: [Job]]] = [:]
        var active: [DeviceID: Job] = [:]
        var seen = Set<JobID>()
        for job in fleet.jobs where seen.insert(job.id).inserted {
            history[job.releaseID, default: [:]][job.deviceID, default: []].append(job)
            if job.state.isActive, active[job.deviceID].map({ ($0.createdAt, $0.id) < (job.createdAt, job.id) }) ?? true {
                active[job.deviceID] = job
            }
        }
        for (release, byDevice) in history {
            for (device, jobs) in byDevice {
                history[release]![device] = jobs.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
            }
        }
        self.history = history
        self.active = active
        activity = fleet.activity
        resolveClaims(at: now)
    }

    mutating func resolveClaims(at date: Date) {
        let all = Array(releases.values)
        claims = [:]
        for id in deviceOrder {
            claims[id] = DesiredFirmwareResolver.resolve(devices[id]!, releases: all, at: date)
        }
    }

    func isClaimed(_ device: DeviceID, by release: ReleaseID) -> Bool { claims[device]?.releaseID == release }

    func need(_ device: FleetDevice?, _ release: FleetRelease) -> UpdateNeed {
        guard let device else { return .update }
        if device.device.version == release.firmware.version { return .onTarget }
        if !release.allowDowngrade, let current = device.versionSequence, current > release.firmware.sequence { return .downgrade }
        return .update
    }

    func retryState(_ jobs: [Job], policy: RetryPolicy) -> RetryState {
        guard let latest = jobs.last, latest.state == .failed else { return .exhausted }
        let failures = jobs.filter { $0.state == .failed }.count
        guard RetryPolicy.isRetryable(latest.failure), failures <= policy.maxRetries else { return .exhausted }
        let at = latest.updatedAt + policy.interval
        return now >= at ? .due(attempt: failures + 1) : .waiting(until: at, attempt: failures + 1)
    }

    /// The devices of a release and its rollout counts.
    struct ReleaseView {
        var counts = RolloutStateMachine.Counts(stage: .init(), total: .init(), waiting: 0)
        /// Devices admitted (they have a job of the release that still counts).
        var admitted: [DeviceID] = []
        /// Claimed, needing the update, never admitted.
        var waiting: [DeviceID] = []
        var population: Int { counts.total.admitted + counts.waiting }
    }

    func view(of release: FleetRelease) -> ReleaseView {
        var view = ReleaseView()
        let byDevice = history[release.id] ?? [:]
        for deviceID in byDevice.keys.sorted() {
            let jobs = byDevice[deviceID]!
            let latest = jobs.last!
            let wanted = isClaimed(deviceID, by: release.id) && need(devices[deviceID], release) == .update
            var succeeded = false
            var failed = false
            var unsettled = false
            switch latest.state {
            case .succeeded:
                // Announcing an old version again puts the device back in play.
                if wanted { unsettled = true } else { succeeded = true }
            case .failed:
                failed = release.rollout.countsFailure(at: latest.updatedAt)
                if isClaimed(deviceID, by: release.id), retryState(jobs, policy: release.policy.retry) != .exhausted {
                    unsettled = true
                }
            case .canceled:
                // Superseded and no longer this release's: it left the release.
                guard wanted else { continue }
                unsettled = true
            default:
                unsettled = true
            }
            view.admitted.append(deviceID)
            let tally = RolloutStateMachine.Tally(admitted: 1, succeeded: succeeded ? 1 : 0, failed: failed ? 1 : 0, unsettled: unsettled ? 1 : 0)
            view.counts.total.add(tally)
            if release.rollout.stage(at: jobs.first!.createdAt) == release.rollout.stage {
                view.counts.stage.add(tally)
            }
        }
        for deviceID in deviceOrder where byDevice[deviceID] == nil && isClaimed(deviceID, by: release.id) {
            if need(devices[deviceID], release) == .update { view.waiting.append(deviceID) }
        }
        view.counts.waiting = view.waiting.count
        return view
    }
}

extension RolloutStateMachine.Tally {
    mutating func add(_ other: Self) {
        admitted += other.admitted
        succeeded += other.succeeded
        failed += other.failed
        unsettled += other.unsettled
    }
}
