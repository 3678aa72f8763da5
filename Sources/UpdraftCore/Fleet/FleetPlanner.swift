import Foundation

/// A job the planner wants created. The engine makes it with ``makeJob(id:)`` (so it is
/// stamped with the tick's time, which decides the rollout stage it belongs to), stores it,
/// and offers it at once when ``offerNow`` says so.
public struct JobRequest: Sendable, Equatable {
    public var device: DeviceID
    public var release: ReleaseID
    public var firmware: FirmwareRef
    /// 1 for the first attempt of this device in this release, 2 for the first retry, ...
    public var attempt: Int
    public var createdAt: Date
    /// Online, consenting and within the rate: send the offer right after creating the job.
    /// The rate permit for it is already taken.
    public var offerNow: Bool

    public func makeJob(id: JobID = .random()) -> Job {
        Job(
            id: id, releaseID: release, deviceID: device, firmwareID: firmware.id, targetVersion: firmware.version,
            createdAt: createdAt)
    }
}

/// Why the planner cancels a job. Only jobs that have not started downloading are
/// replaced; see ``FleetPlanner``.
public enum CancelReason: Sendable, Equatable {
    /// Another release (or a lock) now wins for the device.
    case superseded(by: ReleaseID)
    /// No rule gives the device firmware any more (it became a development device, ...).
    case noLongerTargeted(DesiredFirmware.NoneReason)
    /// The job's release was aborted or canceled.
    case releaseStopped
    /// The operator revoked the device (`updraft device revoke`).
    case revoked

    /// For ``Job/detail``.
    public var detail: String {
        switch self {
        case .superseded(let release): "superseded by release \(release)"
        case .noLongerTargeted(let reason): "no longer targeted (\(reason.rawValue))"
        case .releaseStopped: "release stopped"
        case .revoked: "revoked"
        }
    }
}

/// What the gateway must do. It performs exactly these, in order.
public enum FleetAction: Sendable, Equatable {
    case createJob(JobRequest)
    /// Cancel with ``JobStateMachine/cancel(at:)``, recording ``CancelReason/detail``.
    case cancelJob(JobID, device: DeviceID, reason: CancelReason)
    /// Send the job's offer and record it with ``JobActivity/offered(at:nudge:)``. A nudge
    /// is the one re-offer a stalled download gets before it fails.
    case offer(JobID, device: DeviceID, nudge: Bool)
    /// Fail with ``JobStateMachine/fail(_:detail:at:)``. The retry, if the policy allows
    /// one, comes from a later tick.
    case failJob(JobID, device: DeviceID, reason: FailureReason, detail: String)
    /// Store this rollout state in the release and record the change (an event).
    case rolloutChanged(ReleaseID, RolloutStateMachine, RolloutStateMachine.Change)
}

public struct FleetTick: Sendable, Equatable {
    public var actions: [FleetAction]
    /// The earliest future moment at which a tick could do something with no other input
    /// (a scheduled start, a retry, a timeout, a stall, a free rate permit, the end of a
    /// stage's soak time). `nil`: nothing is due; tick again on the next event.
    public var nextWakeup: Date?
}

/// The fleet rules, as one pure tick: from the time, the releases, the devices and the
/// jobs, the list of actions the gateway performs. Between ticks the planner keeps only the
/// rate limiters (which it fills as it grants offers); everything else is read from the
/// snapshot, so a tick over the result of its own actions returns only what those actions
/// made possible. The gateway ticks after every batch of device events, after applying a
/// non-empty action list, and at ``FleetTick/nextWakeup``; never on a fixed poll. Ticks
/// come at increasing times: a device belongs to the rollout stage during which its first
/// job was created (``JobRequest/createdAt`` is the tick's time), so a stage that started
/// at the very instant of an earlier tick could not tell that tick's jobs from its own.
///
/// Decisions made here:
/// - One active job per device. A device whose active job belongs to another release waits
///   for it; jobs of releases the snapshot does not list are never touched.
/// - A new winner by precedence replaces a job only while it is `queued` or `notified`
///   (nothing transferred yet). A download in progress finishes and the device then gets
///   the winner's job: interrupting it would waste the transfer and confuse devices that
///   cannot cancel a download, and installs are never interrupted.
/// - An aborted or canceled release cancels its jobs up to `downloading` (nothing written
///   to the boot slot yet); jobs from `downloaded` on finish, so no device is left halfway.
/// - A paused release admits no devices, creates no retries and sends no first offers;
///   jobs already offered continue (re-offers, stall handling and timeouts included).
/// - Offers and re-offers count against the release's rate; the single nudge of a stalled
///   download does not (it is one message to a device already admitted, and holding it
///   back would only delay noticing the failure).
/// - Stalls are judged only while the device is online and accepts updates: an offline
///   device is re-offered when it reconnects, a busy one resumes when it says it accepts
///   again, and silence in either case is not a stall.
public struct FleetPlanner: Sendable, Equatable, Codable {
    /// A download with no chunk request or report for this long is nudged once; if it
    /// stays silent this long after the nudge, it fails with ``FailureReason/timeout``.
    public var stallAfter: TimeInterval
    public private(set) var limiters: [ReleaseID: RateLimiter]

    public init(stallAfter: TimeInterval = 120) {
        self.stallAfter = stallAfter
        self.limiters = [:]
    }

    public mutating func tick(at now: Date, fleet: FleetSnapshot) -> FleetTick {
        var run = Run(now: now, index: FleetIndex(fleet, now: now), limiters: limiters, stallAfter: stallAfter)
        run.evaluateRollouts()
        run.manageActiveJobs()
        run.createJobs()
        limiters = run.limiters.filter { run.index.releases[$0.key] != nil }
        return FleetTick(actions: run.actions, nextWakeup: run.wakeups.filter { $0 > now }.min())
    }

    /// When to tick next if nothing happens before. Same as a tick's ``FleetTick/nextWakeup``
    /// but without taking rate permits; returns `now` when a tick would act right away.
    public func nextWakeup(at now: Date, fleet: FleetSnapshot) -> Date? {
        var copy = self
        let tick = copy.tick(at: now, fleet: fleet)
        return tick.actions.isEmpty ? tick.nextWakeup : now
    }

    enum CodingKeys: String, CodingKey {
        case stallAfter = "stall_after", limiters
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stallAfter = try c.decode(TimeInterval.self, forKey: .stallAfter)
        let byName = try c.decode([String: RateLimiter].self, forKey: .limiters)
        limiters = [:]
        for (name, limiter) in byName { limiters[try ReleaseID(validating: name)] = limiter }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(stallAfter, forKey: .stallAfter)
        try c.encode(Dictionary(uniqueKeysWithValues: limiters.map { ($0.key.rawValue, $0.value) }), forKey: .limiters)
    }
}

/// One tick's working state.
private struct Run {
    let now: Date
    var index: FleetIndex
    var limiters: [ReleaseID: RateLimiter]
    let stallAfter: TimeInterval
    var actions: [FleetAction] = []
    var wakeups: [Date] = []
    /// Devices that hold an active job once this tick's cancellations are done.
    var busy = Set<DeviceID>()

    init(now: Date, index: FleetIndex, limiters: [ReleaseID: RateLimiter], stallAfter: TimeInterval) {
        self.now = now
        self.index = index
        self.limiters = limiters
        self.stallAfter = stallAfter
    }

    // MARK: Rollouts

    mutating func evaluateRollouts() {
        var withdrawn = false
        for id in index.releaseOrder {
            var release = index.releases[id]!
            if release.kind == .lock { continue }
            guard now >= release.startsAt else {
                wakeups.append(release.startsAt)
                continue
            }
            let counts = index.view(of: release).counts
            if let change = release.rollout.evaluate(counts, at: now, canComplete: release.policy.membership == .static) {
                index.releases[id] = release
                actions.append(.rolloutChanged(id, release.rollout, change))
                withdrawn = withdrawn || release.rollout.phase.isFinal
            } else if let wakeup = release.rollout.wakeup(counts, after: now) {
                wakeups.append(wakeup)
            }
        }
        // An aborted release no longer claims its devices: the next rule decides for them.
        if withdrawn { index.resolveClaims(at: now) }
    }

    // MARK: Jobs in flight

    mutating func manageActiveJobs() {
        for deviceID in index.deviceOrder {
            guard let job = index.active[deviceID] else { continue }
            guard let owner = index.releases[job.releaseID] else {
                busy.insert(deviceID)
                continue
            }
            let device = index.devices[deviceID]!
            if owner.rollout.phase.isFinal, [.queued, .notified, .downloading].contains(job.state) {
                actions.append(.cancelJob(job.id, device: deviceID, reason: .releaseStopped))
                continue
            }
            let claim = index.claims[deviceID] ?? .none(.noRelease)
            if claim.firmware?.id != job.firmwareID, [.queued, .notified].contains(job.state) {
                let reason: CancelReason =
                    switch claim {
                    case .firmware(_, let release, _): .superseded(by: release)
                    case .none(let why): .noLongerTargeted(why)
                    }
                actions.append(.cancelJob(job.id, device: deviceID, reason: reason))
                continue
            }
            busy.insert(deviceID)
            let activity = index.activity[job.id] ?? JobActivity()
            if let timeout = owner.policy.deviceTimeout, let first = activity.firstProgressAt {
                let deadline = first + timeout
                if now >= deadline {
                    actions.append(
                        .failJob(
                            job.id, device: deviceID, reason: .timeout,
                            detail: "no result \(Int(timeout)) s after the first progress report"))
                    continue
                }
                wakeups.append(deadline)
            }
            if job.state == .downloading, device.device.online, device.device.acceptsUpdates,
                handleStall(job, device: device, activity: activity)
            {
                continue
            }
            if shouldOffer(job, device: device, release: owner, activity: activity) {
                offer(job.id, device: deviceID, release: owner)
            }
        }
    }

    /// Nudges or fails a silent download. Returns true when it acted.
    private mutating func handleStall(_ job: Job, device: FleetDevice, activity: JobActivity) -> Bool {
        let heard = [activity.lastActivityAt, device.lastAnnouncedAt, job.updatedAt].compactMap { $0 }.max()!
        if let nudged = activity.nudgedAt, nudged >= heard {
            if now >= nudged + stallAfter {
                actions.append(
                    .failJob(
                        job.id, device: device.id, reason: .timeout,
                        detail: "download stalled: nothing from the device for \(Int(stallAfter)) s, even after a re-offer"))
                return true
            }
            wakeups.append(nudged + stallAfter)
            return false
        }
        if now >= heard + stallAfter {
            actions.append(.offer(job.id, device: device.id, nudge: true))
            wakeups.append(now + stallAfter)
            return true
        }
        wakeups.append(heard + stallAfter)
        return false
    }

    private func shouldOffer(_ job: Job, device: FleetDevice, release: FleetRelease, activity: JobActivity) -> Bool {
        guard device.device.online, device.device.acceptsUpdates else { return false }
        let session = device.lastAnnouncedAt
        switch job.state {
        case .queued:
            guard release.rollout.phase == .running else { return false }
            if let offered = activity.lastOfferedAt, offered >= session ?? .distantPast { return false }
            return isDeliverable(createdAt: job.createdAt, device: device, release: release)
        case .notified:
            // A device that reconnected since the offer may have missed it (CoAP and HTTP
            // devices that were asleep do): tell it again, once per session.
            guard let session else { return false }
            return session > (activity.lastOfferedAt ?? job.updatedAt)
        default:
            return false
        }
    }

    private func isDeliverable(createdAt: Date, device: FleetDevice, release: FleetRelease) -> Bool {
        switch release.policy.delivery {
        case .immediate: true
        case .gradual: device.lastAnnouncedAt.map { $0 >= createdAt } ?? false
        }
    }

    /// Takes a rate permit for the release; false (and a wakeup) when none is free.
    private mutating func takePermit(_ release: FleetRelease) -> Bool {
        guard let rate = release.policy.notificationsPerMinute else { return true }
        var limiter = limiters[release.id].flatMap { $0.perMinute == rate ? $0 : nil } ?? RateLimiter(perMinute: rate)
        defer { limiters[release.id] = limiter }
        if limiter.tryAcquire(at: now) { return true }
        if let next = limiter.nextAvailable(at: now) { wakeups.append(next) }
        return false
    }

    private mutating func offer(_ job: JobID, device: DeviceID, release: FleetRelease) {
        guard takePermit(release) else { return }
        actions.append(.offer(job, device: device, nudge: false))
    }

    // MARK: New jobs

    mutating func createJobs() {
        for id in index.releaseOrder {
            let release = index.releases[id]!
            guard now >= release.startsAt, release.rollout.isAdmitting else { continue }
            let view = index.view(of: release)
            let history = index.history[id] ?? [:]
            // Devices already admitted: retries, and re-creations after a replacement or
            // after the device announced an old version again.
            for deviceID in view.admitted where !busy.contains(deviceID) && index.isClaimed(deviceID, by: id) {
                guard let device = index.devices[deviceID], index.need(device, release) == .update else { continue }
                let jobs = history[deviceID]!
                let failures = jobs.filter { $0.state == .failed }.count
                switch jobs.last!.state {
                case .failed:
                    switch index.retryState(jobs, policy: release.policy.retry) {
                    case .due(let attempt): create(device, release, attempt: attempt)
                    case .waiting(let until, _): wakeups.append(until)
                    case .exhausted: break
                    }
                case .canceled, .succeeded:
                    create(device, release, attempt: failures + 1)
                default:
                    break
                }
            }
            // New devices, in hash order, up to the current stage's quota.
            var admitted = view.counts.total.admitted
            let quota = release.rollout.quota(population: view.population)
            let order = view.waiting.map { (hash: FleetHash.value(release: id, device: $0), device: $0) }.sorted { $0 < $1 }
            for (_, deviceID) in order {
                guard admitted < quota else { break }
                guard !busy.contains(deviceID), let device = index.devices[deviceID] else { continue }
                create(device, release, attempt: 1)
                admitted += 1
            }
        }
    }

    private mutating func create(_ device: FleetDevice, _ release: FleetRelease, attempt: Int) {
        let offerNow =
            device.device.online && device.device.acceptsUpdates
            && isDeliverable(createdAt: now, device: device, release: release) && takePermit(release)
        actions.append(
            .createJob(
                JobRequest(
                    device: device.id, release: release.id, firmware: release.firmware, attempt: attempt, createdAt: now,
                    offerNow: offerNow)))
        busy.insert(device.id)
    }
}
