import Foundation
import Logging

/// What the engine keeps for the fleet rules, next to the active jobs.
struct FleetState {
    var releases: [ReleaseID: FleetRelease] = [:]
    /// Each release as the store last had it (loaded or written by this engine).
    var stored: [ReleaseID: FleetRelease] = [:]
    var profiles: [DeviceID: DeviceFleetProfile] = [:]
    var verifications: [FirmwareID: FirmwareVerification] = [:]
    /// Catalog sequences: a device's version sequence guards against downgrades.
    var sequences: [ProductID: [FirmwareVersion: Int64]] = [:]
    /// Every job of a fleet release, as it is now.
    var jobs: [JobID: Job] = [:]
    var activity: [JobID: JobActivity] = [:]
    var lastAnnounced: [DeviceID: Date] = [:]
    /// Something changed since the last tick.
    var dirty = false
    var nextWakeup: Date?
    var lastTick: Date?
}

/// The fleet side of the engine: it builds the planner's snapshot, ticks the planner and
/// performs the actions it returns, exactly in order. The rules themselves live in
/// ``FleetPlanner``; nothing here decides who gets what.
extension UpdateEngine {
    // MARK: Loading

    func loadFleet() async throws {
        fleet.profiles = try await store.fleetProfiles()
        for verification in try await store.verifications() { fleet.verifications[verification.firmwareID] = verification }
        try await loadCatalog()
        for release in try await store.fleetReleases() {
            try await adoptFleetRelease(release)
            for job in try await store.jobs(release: release.id) { fleet.jobs[job.id] = job }
        }
        fleet.activity = try await store.jobActivity()
        if var stored = try await store.plannerState() {
            // The configured stall time wins over the stored one; the rate limiters carry over.
            stored.stallAfter = planner.stallAfter
            planner = stored
        }
        fleet.dirty = true
    }

    private func loadCatalog() async throws {
        var sequences: [ProductID: [FirmwareVersion: Int64]] = [:]
        for firmware in try await store.firmwareList(product: nil) {
            sequences[firmware.product, default: [:]][firmware.version] = firmware.sequence
        }
        fleet.sequences = sequences
    }

    private func adoptFleetRelease(_ release: FleetRelease) async throws {
        if firmware[release.firmware.id] == nil, let fw = try await store.firmware(id: release.firmware.id) {
            firmware[fw.id] = fw
        }
        fleet.releases[release.id] = release
        fleet.stored[release.id] = release
        pendingFleetReleases[release.id] = nil
        // Devices named before they ever connected: known (offline) from now on.
        if case .devices(let ids) = release.target {
            for id in ids where devices[id] == nil { devices[id] = Device(id: id) }
        }
    }

    // MARK: Inputs from operators (through the store's event log)

    /// A fleet release was created or changed by an operator (perhaps in another process):
    /// reload it, and the verification of its firmware.
    public func fleetReleaseChanged(_ id: ReleaseID) async throws {
        guard let release = try await store.fleetRelease(id) else { return }
        try await adoptFleetRelease(release)
        if let verification = try await store.verification(firmwareID: release.firmware.id) {
            fleet.verifications[verification.firmwareID] = verification
            pendingVerifications[verification.firmwareID] = nil
        }
        fleet.dirty = true
    }

    /// An operator changed a device's groups, development flag or lock, or revoked it.
    /// Returns the commands to deliver (a revoked device's withdrawal).
    @discardableResult
    public func fleetProfileChanged(_ id: DeviceID) async throws -> [DeviceCommand] {
        let profile = try await store.fleetProfiles()[id] ?? .default
        fleet.profiles[id] = profile
        if let lock = profile.lock, fleet.releases[lock.releaseID] == nil {
            try await fleetReleaseChanged(lock.releaseID)
        }
        if devices[id] == nil { devices[id] = Device(id: id) }
        fleet.dirty = true
        enforceRevocation(id)
        return takeCommands()
    }

    /// Firmware was added to the catalog: version sequences may have changed.
    public func catalogChanged() async throws {
        try await loadCatalog()
        fleet.dirty = true
    }

    // MARK: Ticking

    /// When the planner wants to tick next with no other input.
    public var nextFleetWakeup: Date? { fleet.nextWakeup }

    /// Ticks when something changed since the last tick, or a wakeup is due. The gateway
    /// calls it from its flush loop, so device events are ticked in batches.
    @discardableResult
    public func tickIfDue() -> TickResult {
        let due = fleet.nextWakeup.map { now() >= $0 } ?? false
        // The planner's actions are transitions: none while the store cannot be written.
        guard storeWritable, fleet.dirty || due else { return TickResult(commands: takeCommands()) }
        return tick()
    }

    /// Runs the planner and performs its actions, ticking again while a tick acts (its
    /// actions may make more possible). Returns the number of actions performed and the
    /// commands to deliver.
    @discardableResult
    public func tick() -> TickResult {
        TickResult(actions: tickPlanner(), commands: takeCommands())
    }

    private func tickPlanner() -> Int {
        fleet.dirty = false
        guard !fleet.releases.isEmpty else {
            fleet.nextWakeup = nil
            return 0
        }
        var performed = 0
        for _ in 0..<16 {
            // Ticks come at increasing times (see FleetPlanner): a re-tick within the same
            // instant would mix a new stage's devices with the previous tick's.
            var time = now()
            if let last = fleet.lastTick, time <= last { time = last.addingTimeInterval(0.001) }
            fleet.lastTick = time
            let before = planner
            let result = planner.tick(at: time, fleet: snapshot())
            if planner != before { pendingPlanner = true }
            fleet.nextWakeup = result.nextWakeup
            if result.actions.isEmpty { break }
            for action in result.actions { perform(action, at: time) }
            performed += result.actions.count
        }
        return performed
    }

    /// The fleet as the planner sees it now.
    public func snapshot() -> FleetSnapshot {
        let fleetDevices = devices.values.map { device in
            FleetDevice(
                device: device, profile: fleet.profiles[device.id] ?? .default,
                versionSequence: device.product.flatMap { product in device.version.flatMap { fleet.sequences[product]?[$0] } },
                lastAnnouncedAt: fleet.lastAnnounced[device.id])
        }
        var jobs = Array(fleet.jobs.values)
        for machine in active.values where fleet.jobs[machine.job.id] == nil { jobs.append(machine.job) }
        return FleetSnapshot(devices: fleetDevices, releases: Array(fleet.releases.values), jobs: jobs, activity: fleet.activity)
    }

    /// The status of one fleet release as the engine sees it now.
    public func releaseStatus(_ id: ReleaseID) -> ReleaseStatus? {
        FleetStatus.release(id, fleet: snapshot(), at: now())
    }

    public func fleetRelease(_ id: ReleaseID) -> FleetRelease? { fleet.releases[id] }
    public func verification(of firmwareID: FirmwareID) -> FirmwareVerification? { fleet.verifications[firmwareID] }

    // MARK: Actions

    func perform(_ action: FleetAction, at time: Date) {
        switch action {
        case .createJob(let request):
            createFleetJob(request, at: time)
        case .offer(let jobID, let device, let nudge):
            guard let machine = active[device], machine.job.id == jobID else { return }
            sendFleetOffer(device, nudge: nudge, at: time)
        case .cancelJob(let jobID, let device, let reason):
            guard var machine = active[device], machine.job.id == jobID else { return }
            apply(machine.cancel(at: time), &machine, device: device, detail: reason.detail)
        case .failJob(let jobID, let device, let reason, let detail):
            guard var machine = active[device], machine.job.id == jobID else { return }
            apply(machine.fail(reason, detail: detail, at: time), &machine, device: device)
        case .rolloutChanged(let id, let rollout, let change):
            guard var release = fleet.releases[id] else { return }
            release.rollout = rollout
            fleet.releases[id] = release
            pendingFleetReleases[id] = release
            record(
                UpdraftEvent(
                    kind: .rolloutChanged, time: time, releaseID: id, firmwareID: release.firmware.id,
                    detail: change.summary))
            logger.info("rollout changed", metadata: ["release.id": "\(id)", "rollout.change": "\(change.summary)"])
            if release.kind == .verification {
                switch change {
                case .completed, .aborted:
                    updateVerification(release.firmware.id, at: time) { $0.verificationReleaseEnded(at: time) }
                case .canceled:
                    updateVerification(release.firmware.id, at: time) { $0.verificationCanceled(at: time) }
                case .advanced, .paused, .resumed:
                    break
                }
            }
        }
    }

    private func createFleetJob(_ request: JobRequest, at time: Date) {
        guard active[request.device] == nil else {
            logger.warning("planner asked for a second active job", metadata: ["device.id": "\(request.device)"])
            return
        }
        guard firmware[request.firmware.id] != nil else {
            logger.error("fleet release names firmware not in the catalog", metadata: ["firmware.id": "\(request.firmware.id)"])
            return
        }
        if devices[request.device] == nil { save(Device(id: request.device)) }
        let job = request.makeJob(id: .random())
        active[request.device] = JobStateMachine(job)
        fleet.jobs[job.id] = job
        pendingJobs[job.id] = job
        record(.job(.jobCreated, job, detail: request.attempt > 1 ? "attempt \(request.attempt)" : nil, time: time))
        if request.offerNow { sendFleetOffer(request.device, nudge: false, at: time) }
    }

    private func sendFleetOffer(_ id: DeviceID, nudge: Bool, at time: Date) {
        guard var machine = active[id], let fw = firmware[machine.job.firmwareID] else { return }
        emit(.offer(machine.job, fw), to: id)
        fleet.activity[machine.job.id, default: JobActivity()].offered(at: time, nudge: nudge)
        pendingActivity[machine.job.id] = fleet.activity[machine.job.id]
        apply(machine.offered(at: time), &machine, device: id)
    }

    /// Keeps the fleet's view of a job current and feeds the verification gate.
    func jobChanged(_ job: Job, at time: Date) {
        if fleet.jobs[job.id] != nil || fleet.releases[job.releaseID] != nil {
            fleet.jobs[job.id] = job
            fleet.dirty = true
        }
        if job.state.isTerminal { fleet.activity[job.id] = nil }
        if job.state == .succeeded {
            updateVerification(job.firmwareID, at: time) { $0.deviceSucceeded(job.deviceID, at: time) }
        }
    }

    private func updateVerification(
        _ firmwareID: FirmwareID, at time: Date, _ body: (inout FirmwareVerification) -> FirmwareVerification.Action?
    ) {
        var verification = fleet.verifications[firmwareID] ?? FirmwareVerification(firmwareID: firmwareID)
        guard case .statusChanged(let from, let to)? = body(&verification) else { return }
        fleet.verifications[firmwareID] = verification
        pendingVerifications[firmwareID] = verification
        record(
            UpdraftEvent(
                kind: .verificationStatus, time: time, deviceID: verification.verifiedBy, releaseID: verification.releaseID,
                firmwareID: firmwareID, detail: "\(from.rawValue) -> \(to.rawValue)"))
        logger.info("firmware verification changed", metadata: ["firmware.id": "\(firmwareID)", "verification.status": "\(to.rawValue)"])
    }
}

extension RolloutStateMachine.Change {
    /// One line for the event log and the CLI.
    public var summary: String {
        switch self {
        case .advanced(let from, let to, let automatic):
            "advanced from stage \(from + 1) to stage \(to + 1)\(automatic ? " (success threshold met)" : " (operator)")"
        case .paused(.operatorRequest): "paused by the operator"
        case .paused(.errorThreshold(let failed, let of)): "paused: \(failed) of \(of) devices failed, past the error threshold"
        case .resumed: "resumed"
        case .aborted(let failed, let of): "aborted: \(failed) of \(of) devices failed, past the error threshold"
        case .completed: "completed"
        case .canceled: "canceled"
        }
    }
}
