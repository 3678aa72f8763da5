import Foundation
import Logging

/// Runs the fleet's jobs: keeps the registry and the active jobs in memory, drives the
/// job state machine from what devices say, decides what online devices are told about
/// their jobs, and batches every change for the store. Protocol adapters call in; every
/// entry point returns the ``DeviceCommand``s to deliver, in order (the engine never
/// calls an adapter). Nothing here knows MQTT or CoAP.
public actor UpdateEngine {
    let store: any StatusStore
    let now: @Sendable () -> Date
    let logger: Logger

    var devices: [DeviceID: Device] = [:]
    /// The active job of each device (at most one).
    var active: [DeviceID: JobStateMachine] = [:]
    var firmware: [FirmwareID: Firmware] = [:]
    /// Fleet rules: releases, profiles, verification, job history and activity.
    var fleet = FleetState()
    var planner: FleetPlanner
    /// What each device may make the engine record (refusals, announcements).
    var eventBudget: DeviceEventBudget

    var pendingDevices: [DeviceID: Device] = [:]
    var pendingJobs: [JobID: Job] = [:]
    var pendingEvents: [UpdraftEvent] = []
    var pendingFleetReleases: [ReleaseID: FleetRelease] = [:]
    var pendingVerifications: [FirmwareID: FirmwareVerification] = [:]
    var pendingActivity: [JobID: JobActivity] = [:]
    var pendingPlanner = false
    /// Commands decided by the entry point running now, taken when it returns. Entry
    /// points emit only after their last suspension, so none is left for another to return.
    var outbox: [DeviceCommand] = []
    var commandSequence: UInt64 = 0
    /// False from a failed flush to the next one that succeeds: while the store cannot be
    /// written the engine accepts no job transition (devices get `unavailable` and retry),
    /// so nothing a device was told is applied exists only in memory.
    public private(set) var storeWritable = true

    public init(
        store: any StatusStore, logger: Logger, now: @escaping @Sendable () -> Date = { Date() },
        planner: FleetPlanner = FleetPlanner(), eventBudget: DeviceEventBudget = DeviceEventBudget()
    ) {
        self.store = store
        self.logger = logger
        self.now = now
        self.planner = planner
        self.eventBudget = eventBudget
    }

    /// Loads the registry and every unfinished job. Devices count as offline until they
    /// (or the broker's retained presence) say otherwise.
    public func load() async throws {
        for var device in try await store.devices() {
            device.online = false
            devices[device.id] = device
        }
        for job in try await store.activeJobs() { try await adopt(job) }
        try await loadFleet()
        enforceRevocations()
        logger.info("engine loaded", metadata: ["devices": "\(devices.count)", "jobs.active": "\(active.count)"])
    }

    // MARK: Inputs from devices

    /// - Parameters:
    ///   - silentFor: for a device taken offline because it stayed silent (CoAP
    ///     lifetime), how long ago it was last heard: `lastSeen` keeps that moment.
    ///   - replayed: the broker's retained copy, delivered because the gateway
    ///     (re)subscribed. It is the best knowledge there is (a restarted gateway learns
    ///     who is connected from it), but not the device speaking now: `lastSeen` stays.
    @discardableResult
    public func presence(
        _ id: DeviceID, online: Bool, via transport: Transport = .mqtt, silentFor: Duration = .zero, replayed: Bool = false
    ) -> [DeviceCommand] {
        if online, isRevoked(id) { return takeCommands() }
        let time = now()
        var device = devices[id] ?? Device(id: id, firstSeen: time)
        let changed = device.online != online
        device.online = online
        if !replayed {
            let (seconds, attoseconds) = silentFor.components
            device.lastSeen = time.addingTimeInterval(-(Double(seconds) + Double(attoseconds) / 1e18))
        }
        if online { device.transport = transport }
        save(device)
        if changed {
            record(UpdraftEvent(kind: online ? .deviceOnline : .deviceOffline, time: time, deviceID: id))
        }
        if online { offerIfReady(id) }
        fleet.dirty = true
        return takeCommands()
    }

    /// - Parameter replayed: the broker's retained copy, delivered because the gateway
    ///   (re)subscribed (MQTT): history, not news. It may update the registry and confirm
    ///   a target version, never fail an install (see ``Announcement/recency(knownBoot:replayed:)``).
    ///
    /// Returns, with the commands to deliver, the error to send back when the announcement
    /// cannot be taken now (`unavailable`: the store cannot be written; announce again
    /// later), or `rate_limited` when the device announced changes faster than its event
    /// budget: the announcement is then ignored.
    @discardableResult
    public func announced(
        _ id: DeviceID, _ announcement: Announcement, via transport: Transport = .mqtt, replayed: Bool = false
    ) -> EngineReply {
        let refusal = takeAnnouncement(id, announcement, via: transport, replayed: replayed)
        return EngineReply(refusal: refusal, commands: takeCommands())
    }

    private func takeAnnouncement(
        _ id: DeviceID, _ announcement: Announcement, via transport: Transport, replayed: Bool
    ) -> UpdraftError? {
        if let unavailable = refusalWhileUnwritable() { return unavailable }
        if let revoked = refusalIfRevoked(id) { return revoked }
        let time = now()
        var device = devices[id] ?? Device(id: id, firstSeen: time)
        let recency = announcement.recency(knownBoot: device.boot, replayed: replayed)
        if recency == .outdated {
            logger.debug(
                "ignored an outdated announcement",
                metadata: ["device.id": "\(id)", "device.boot": "\(announcement.boot ?? 0)", "device.boot.known": "\(device.boot ?? 0)"])
            return nil
        }
        let changed =
            device.product != announcement.product || device.version != announcement.version
            || device.acceptsUpdates != announcement.acceptsUpdates || device.transport != transport
        if changed, let limited = spendEventBudget(id, at: time) { return limited }
        device.product = announcement.product
        device.version = announcement.version
        device.acceptsUpdates = announcement.acceptsUpdates
        device.transport = transport
        if let boot = announcement.boot { device.boot = boot }
        // A device that speaks is connected, whatever presence said last; a replay is not
        // the device speaking.
        let cameOnline = !replayed && !device.online
        if !replayed {
            device.online = true
            device.lastSeen = time
        }
        save(device)
        fleet.lastAnnounced[id] = time
        fleet.dirty = true
        if cameOnline { record(UpdraftEvent(kind: .deviceOnline, time: time, deviceID: id)) }
        if changed {
            record(
                UpdraftEvent(
                    kind: .deviceAnnounced, time: time, deviceID: id,
                    detail: "product=\(announcement.product) version=\(announcement.version) accepts_updates=\(announcement.acceptsUpdates)"))
        }
        guard var machine = active[id] else { return nil }
        let news = recency == .news
        if let fw = firmware[machine.job.firmwareID], fw.product != announcement.product {
            if news {
                apply(machine.fail(.rejected, detail: "device announced product \(announcement.product), firmware is for \(fw.product)", at: time), &machine, device: id)
            }
            return nil
        }
        let outcome = machine.announced(version: announcement.version, at: time, news: news)
        apply(outcome, &machine, device: id)
        if outcome == .resendOffer || outcome == .unchanged { offerIfReady(id) }
        return nil
    }

    /// A progress report. Returns, with the commands to deliver, the error to send back
    /// when the report is refused.
    @discardableResult
    public func report(_ id: DeviceID, job jobID: JobID, _ report: DeviceReport) -> EngineReply {
        let refusal = takeReport(id, job: jobID, report)
        return EngineReply(refusal: refusal, commands: takeCommands())
    }

    private func takeReport(_ id: DeviceID, job jobID: JobID, _ report: DeviceReport) -> UpdraftError? {
        if let unavailable = refusalWhileUnwritable() { return unavailable }
        if let revoked = refusalIfRevoked(id) { return revoked }
        let time = now()
        touch(id, at: time)
        guard var machine = active[id], machine.job.id == jobID else {
            if let limited = spendEventBudget(id, at: time) { return limited }
            // A scan of the active jobs, on this refusal path only (budgeted above).
            let owner = active.first { $0.value.job.id == jobID }?.key
            let error =
                owner.map { _ in
                    UpdraftError("not_your_job", "Job \(jobID) belongs to another device; report only the job of your own offer.")
                } ?? UpdraftError("unknown_job", "Job \(jobID) is not the active job of device \(id); ask again by re-announcing.")
            record(UpdraftEvent(kind: .jobRefused, time: time, deviceID: id, jobID: jobID, detail: error.message))
            return error
        }
        if fleet.jobs[jobID] != nil {
            let first = fleet.activity[jobID]?.firstProgressAt == nil
            fleet.activity[jobID, default: JobActivity()].progressed(at: time)
            // The first report starts the per-device timeout: keep it across restarts.
            if first { pendingActivity[jobID] = fleet.activity[jobID] }
        }
        let outcome = machine.report(report, at: time)
        // A refusal is recorded: it spends the budget. Accepted progress never does.
        if case .refused = outcome, let limited = spendEventBudget(id, at: time) { return limited }
        apply(outcome, &machine, device: id)
        if case .refused(let why) = outcome { return UpdraftError("transition_refused", "Report refused: \(why).") }
        return nil
    }

    /// Checks that a device may download for a job and returns the firmware to serve.
    public func authorizeDownload(_ id: DeviceID, job jobID: JobID) -> Result<Firmware, UpdraftError> {
        if let revoked = refusalIfRevoked(id) { return .failure(revoked) }
        guard let machine = active[id], machine.job.id == jobID, let fw = firmware[machine.job.firmwareID] else {
            return .failure(UpdraftError("unknown_job", "Job \(jobID) is not the active job of device \(id); re-announce to get your current job."))
        }
        switch machine.job.state {
        case .installing, .installed:
            return .failure(UpdraftError("job_installing", "Job \(jobID) is already installing; nothing to download."))
        default:
            if fleet.jobs[jobID] != nil { fleet.activity[jobID, default: JobActivity()].chunkRequested(at: now()) }
            return .success(fw)
        }
    }

    // MARK: Inputs from operators (through the store's event log)

    /// A job was created (by the CLI, possibly in another process): take it over.
    /// Returns the commands to deliver (its offer when the device is online).
    @discardableResult
    public func jobCreated(_ jobID: JobID) async throws -> [DeviceCommand] {
        // Jobs the planner made here come back through the log too, perhaps after they
        // already ended in memory: the stored copy is older and must not be adopted again.
        if fleet.jobs[jobID] != nil { return takeCommands() }
        guard let job = try await store.job(jobID), job.state.isActive else { return takeCommands() }
        if active[job.deviceID]?.job.id == jobID { return takeCommands() }
        try await adopt(job)
        if devices[job.deviceID] == nil {
            devices[job.deviceID] = Device(id: job.deviceID)
        }
        enforceRevocation(job.deviceID)
        offerIfReady(job.deviceID)
        return takeCommands()
    }

    // MARK: Queries

    public func activeJob(of id: DeviceID) -> Job? { active[id]?.job }
    /// The catalog firmware a job installs.
    public func firmware(for job: Job) -> Firmware? { firmware[job.firmwareID] }
    public func device(_ id: DeviceID) -> Device? { devices[id] }
    public var onlineCount: Int { devices.values.filter(\.online).count }
    /// Active jobs by state (the ones this engine holds: terminal jobs are only in the store).
    public var activeJobStates: [JobState: Int] { active.values.reduce(into: [:]) { $0[$1.job.state, default: 0] += 1 } }
    /// Devices the registry has online whose last transport is `transport`.
    public func onlineDevices(via transport: Transport) -> [DeviceID] {
        devices.values.filter { $0.online && $0.transport == transport }.map(\.id)
    }

    // MARK: Persistence

    /// Writes everything changed since the last flush in one transaction. A job the store
    /// refuses (one active job per device: an operator's job won the race) is left out and
    /// canceled here, with why, and the rest is written. When the write fails as a whole
    /// the changes stay pending for the next flush and the engine stops accepting job
    /// transitions until a flush succeeds (see ``storeWritable``). Returns the committed
    /// events and the commands to deliver.
    @discardableResult
    public func flush() async throws -> FlushResult {
        let batch = StoreBatch(
            devices: Array(pendingDevices.values), jobs: Array(pendingJobs.values), events: pendingEvents,
            fleetReleases: Array(pendingFleetReleases.values),
            fleetReleaseBases: fleet.stored.filter { pendingFleetReleases[$0.key] != nil },
            verifications: Array(pendingVerifications.values), activity: pendingActivity,
            plannerState: pendingPlanner ? planner : nil)
        if batch.isEmpty { return FlushResult(commands: takeCommands()) }
        pendingDevices = [:]
        pendingJobs = [:]
        pendingEvents = []
        pendingFleetReleases = [:]
        pendingVerifications = [:]
        pendingActivity = [:]
        pendingPlanner = false
        do {
            let result = try await store.commitIsolatingRefusals(batch)
            let recovered = !storeWritable
            storeWritable = true
            for release in batch.fleetReleases { fleet.stored[release.id] = release }
            for refusal in result.refused { storeRefused(refusal) }
            // Jobs that arrived while offers were held back are offered now.
            if recovered {
                for (id, machine) in active where machine.job.state == .queued { offerIfReady(id) }
            }
            return FlushResult(events: result.events, commands: takeCommands(), wrote: true)
        } catch {
            storeWritable = false
            // Newer changes made while committing win over the failed batch.
            for device in batch.devices where pendingDevices[device.id] == nil { pendingDevices[device.id] = device }
            for job in batch.jobs where pendingJobs[job.id] == nil { pendingJobs[job.id] = job }
            for release in batch.fleetReleases where pendingFleetReleases[release.id] == nil {
                pendingFleetReleases[release.id] = release
            }
            for verification in batch.verifications where pendingVerifications[verification.firmwareID] == nil {
                pendingVerifications[verification.firmwareID] = verification
            }
            for (job, activity) in batch.activity where pendingActivity[job] == nil { pendingActivity[job] = activity }
            if batch.plannerState != nil { pendingPlanner = true }
            pendingEvents = batch.events + pendingEvents
            throw error
        }
    }

    /// The store would not write a job (another active job holds its device, or it names
    /// something the store lacks): cancel it with the store's reason, so the log says why
    /// and the device's other job goes ahead.
    private func storeRefused(_ refusal: RefusedJob) {
        let id = refusal.job.deviceID
        let detail = "The store refused the job: \(refusal.error.message)"
        logger.warning(
            "store refused a job; canceling it",
            metadata: ["job.id": "\(refusal.job.id)", "device.id": "\(id)", "error.code": "\(refusal.error.code)"])
        if var machine = active[id], machine.job.id == refusal.job.id {
            apply(machine.cancel(at: now()), &machine, device: id, detail: detail)
            return
        }
        // Replaced in memory meanwhile (the operator's job was adopted): end the copy the
        // fleet view still holds, unless its end is already pending.
        var machine = JobStateMachine(pendingJobs[refusal.job.id] ?? fleet.jobs[refusal.job.id] ?? refusal.job)
        let from = machine.job.state
        let time = now()
        guard case .transitioned = machine.cancel(at: time) else { return }
        pendingJobs[machine.job.id] = machine.job
        record(.job(.jobTransition, machine.job, from: from, detail: detail, time: time))
        jobChanged(machine.job, at: time)
    }

    /// `unavailable` while the store cannot be written, nil otherwise.
    func refusalWhileUnwritable() -> UpdraftError? {
        guard !storeWritable else { return nil }
        return UpdraftError(
            "unavailable",
            "The gateway cannot save job progress right now (its store cannot be written); send the same message again in a few seconds.")
    }

    public var hasPendingWrites: Bool {
        !(pendingDevices.isEmpty && pendingJobs.isEmpty && pendingEvents.isEmpty && pendingFleetReleases.isEmpty
            && pendingVerifications.isEmpty && pendingActivity.isEmpty && !pendingPlanner)
    }

    // MARK: Internals

    func adopt(_ job: Job) async throws {
        if firmware[job.firmwareID] == nil {
            guard let fw = try await store.firmware(id: job.firmwareID) else {
                logger.error("job names missing firmware", metadata: ["job.id": "\(job.id)", "firmware.id": "\(job.firmwareID)"])
                return
            }
            firmware[job.firmwareID] = fw
        }
        active[job.deviceID] = JobStateMachine(job)
    }

    private func offerIfReady(_ id: DeviceID) {
        // An offer moves the job to `notified`: no transitions while the store cannot be written.
        guard storeWritable, let device = devices[id], device.online, device.acceptsUpdates, var machine = active[id],
            let fw = firmware[machine.job.firmwareID]
        else { return }
        // The planner decides first offers and per-session re-offers of fleet jobs (consent,
        // gradual delivery, rate); downloads in progress are resumed here as for any job.
        if fleet.jobs[machine.job.id] != nil, machine.job.state == .queued || machine.job.state == .notified { return }
        switch machine.job.state {
        case .queued, .notified, .downloading, .downloaded, .verified:
            emit(.offer(machine.job, fw), to: id)
            apply(machine.offered(at: now()), &machine, device: id)
        default:
            return
        }
    }

    func apply(
        _ outcome: JobStateMachine.Outcome, _ machine: inout JobStateMachine, device id: DeviceID, detail: String? = nil
    ) {
        let time = now()
        switch outcome {
        case .transitioned(let from, _):
            let job = machine.job
            pendingJobs[job.id] = job
            record(.job(.jobTransition, job, from: from, detail: detail, time: time))
            jobChanged(job, at: time)
            if job.state.isTerminal {
                active[id] = nil
                emit(.withdraw(job.id), to: id)
                logger.info(
                    "job ended",
                    metadata: ["job.id": "\(job.id)", "device.id": "\(id)", "job.state": "\(job.state.rawValue)"])
            } else {
                active[id] = machine
            }
        case .refused(let why):
            record(.job(.jobRefused, machine.job, detail: why, time: time))
            logger.notice("transition refused", metadata: ["job.id": "\(machine.job.id)", "device.id": "\(id)", "why": "\(why)"])
        case .unchanged, .resendOffer:
            break
        }
    }

    /// Queues a command for the device, addressed to the transport it last spoke through
    /// (MQTT when unknown).
    func emit(_ action: DeviceCommand.Action, to id: DeviceID) {
        commandSequence += 1
        outbox.append(
            DeviceCommand(device: id, transport: devices[id]?.transport ?? .mqtt, action: action, sequence: commandSequence))
    }

    /// The commands decided so far, in order; the outbox is empty afterwards.
    func takeCommands() -> [DeviceCommand] {
        defer { outbox = [] }
        return outbox
    }

    func touch(_ id: DeviceID, at time: Date) {
        guard var device = devices[id] else { return }
        device.lastSeen = time
        devices[id] = device
    }

    func save(_ device: Device) {
        devices[device.id] = device
        pendingDevices[device.id] = device
    }

    func record(_ event: UpdraftEvent) { pendingEvents.append(event) }

    /// Takes one of the device's recordable events; returns `rate_limited` when it has none
    /// left (the caller then records and applies nothing). Records the summary of what was
    /// dropped before, if anything.
    func spendEventBudget(_ id: DeviceID, at time: Date) -> UpdraftError? {
        switch eventBudget.admit(id, at: time) {
        case .record(let dropped):
            if let dropped {
                record(
                    UpdraftEvent(
                        kind: .deviceRateLimited, time: time, deviceID: id,
                        detail: "dropped \(dropped.count) messages from \(dropped.from.ISO8601Format()) to \(dropped.to.ISO8601Format())"))
                logger.notice("device was rate limited", metadata: ["device.id": "\(id)", "dropped": "\(dropped.count)"])
            }
            return nil
        case .drop(let retryAt):
            let seconds = max(1, Int(retryAt.timeIntervalSince(time).rounded(.up)))
            return UpdraftError(
                "rate_limited",
                "Too many announcements or refused reports from this device (at most \(eventBudget.perMinute) a minute); this message was ignored. Wait \(seconds) s before sending again.")
        }
    }
}
