import Foundation
import Logging

/// Runs the fleet's jobs: keeps the registry and the active jobs in memory, drives the
/// job state machine from what devices say, tells online devices about their jobs, and
/// batches every change for the store. Protocol adapters call in; nothing here knows
/// MQTT or CoAP.
public actor UpdateEngine {
    let store: any StatusStore
    let notifiers: [Transport: any DeviceNotifier]
    let now: @Sendable () -> Date
    let logger: Logger

    var devices: [DeviceID: Device] = [:]
    /// The active job of each device (at most one).
    var active: [DeviceID: JobStateMachine] = [:]
    var firmware: [String: Firmware] = [:]
    /// Fleet rules: releases, profiles, verification, job history and activity.
    var fleet = FleetState()
    var planner: FleetPlanner
    /// What each device may make the engine record (refusals, announcements).
    var eventBudget: DeviceEventBudget

    var pendingDevices: [DeviceID: Device] = [:]
    var pendingJobs: [JobID: Job] = [:]
    var pendingEvents: [UpdraftEvent] = []
    var pendingFleetReleases: [ReleaseID: FleetRelease] = [:]
    var pendingVerifications: [String: FirmwareVerification] = [:]
    var pendingActivity: [JobID: JobActivity] = [:]
    var pendingPlanner = false

    /// - Parameter notifiers: one per protocol adapter; a device's offers go through the
    ///   adapter it last spoke through (MQTT when unknown).
    public init(
        store: any StatusStore, notifiers: [Transport: any DeviceNotifier], logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }, planner: FleetPlanner = FleetPlanner(),
        eventBudget: DeviceEventBudget = DeviceEventBudget()
    ) {
        self.store = store
        self.notifiers = notifiers
        self.logger = logger
        self.now = now
        self.planner = planner
        self.eventBudget = eventBudget
    }

    /// An engine with one adapter, MQTT.
    public init(
        store: any StatusStore, notifier: any DeviceNotifier, logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }, planner: FleetPlanner = FleetPlanner()
    ) {
        self.init(store: store, notifiers: [.mqtt: notifier], logger: logger, now: now, planner: planner)
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
        logger.info("engine loaded", metadata: ["devices": "\(devices.count)", "jobs.active": "\(active.count)"])
    }

    // MARK: Inputs from devices

    /// - Parameter silentFor: for a device taken offline because it stayed silent (CoAP
    ///   lifetime), how long ago it was last heard: `lastSeen` keeps that moment.
    public func presence(_ id: DeviceID, online: Bool, via transport: Transport = .mqtt, silentFor: Duration = .zero) {
        let time = now()
        var device = devices[id] ?? Device(id: id, firstSeen: time)
        let changed = device.online != online
        device.online = online
        let (seconds, attoseconds) = silentFor.components
        device.lastSeen = time.addingTimeInterval(-(Double(seconds) + Double(attoseconds) / 1e18))
        if online { device.transport = transport }
        save(device)
        if changed {
            record(UpdraftEvent(kind: online ? .deviceOnline : .deviceOffline, time: time, deviceID: id))
        }
        if online { offerIfReady(id) }
        fleet.dirty = true
    }

    /// Returns `rate_limited` when the device announced changes faster than its event
    /// budget: the announcement is then ignored.
    @discardableResult
    public func announced(_ id: DeviceID, _ announcement: Announcement, via transport: Transport = .mqtt) -> UpdraftError? {
        let time = now()
        var device = devices[id] ?? Device(id: id, firstSeen: time)
        let changed =
            device.product != announcement.product || device.version != announcement.version
            || device.acceptsUpdates != announcement.acceptsUpdates || device.transport != transport
        if changed, let limited = spendEventBudget(id, at: time) { return limited }
        device.product = announcement.product
        device.version = announcement.version
        device.acceptsUpdates = announcement.acceptsUpdates
        device.transport = transport
        // A device that speaks is connected, whatever presence said last.
        let cameOnline = !device.online
        device.online = true
        device.lastSeen = time
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
        if let fw = firmware[machine.job.firmwareID], fw.product != announcement.product {
            apply(machine.fail(.rejected, detail: "device announced product \(announcement.product), firmware is for \(fw.product)", at: time), &machine, device: id)
            return nil
        }
        let outcome = machine.announced(version: announcement.version, at: time)
        apply(outcome, &machine, device: id)
        if outcome == .resendOffer || outcome == .unchanged { offerIfReady(id) }
        return nil
    }

    /// A progress report. Returns the error to send back when the report is refused.
    @discardableResult
    public func report(_ id: DeviceID, job jobID: JobID, _ report: DeviceReport) -> UpdraftError? {
        let time = now()
        touch(id, at: time)
        guard var machine = active[id], machine.job.id == jobID else {
            if let limited = spendEventBudget(id, at: time) { return limited }
            let error = UpdraftError("unknown_job", "Job \(jobID) is not the active job of device \(id); ask again by re-announcing.")
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
    public func jobCreated(_ jobID: JobID) async throws {
        // Jobs the planner made here come back through the log too, perhaps after they
        // already ended in memory: the stored copy is older and must not be adopted again.
        if fleet.jobs[jobID] != nil { return }
        guard let job = try await store.job(jobID), job.state.isActive else { return }
        if active[job.deviceID]?.job.id == jobID { return }
        try await adopt(job)
        if devices[job.deviceID] == nil {
            devices[job.deviceID] = Device(id: job.deviceID)
        }
        offerIfReady(job.deviceID)
    }

    // MARK: Queries

    public func activeJob(of id: DeviceID) -> Job? { active[id]?.job }
    public func device(_ id: DeviceID) -> Device? { devices[id] }
    public var onlineCount: Int { devices.values.filter(\.online).count }
    /// Devices the registry has online whose last transport is `transport`.
    public func onlineDevices(via transport: Transport) -> [DeviceID] {
        devices.values.filter { $0.online && $0.transport == transport }.map(\.id)
    }

    // MARK: Persistence

    /// Writes everything changed since the last flush in one transaction. On failure the
    /// changes stay pending and go with the next flush.
    @discardableResult
    public func flush() async throws -> [UpdraftEvent] {
        let batch = StoreBatch(
            devices: Array(pendingDevices.values), jobs: Array(pendingJobs.values), events: pendingEvents,
            fleetReleases: Array(pendingFleetReleases.values),
            fleetReleaseBases: fleet.stored.filter { pendingFleetReleases[$0.key] != nil },
            verifications: Array(pendingVerifications.values), activity: pendingActivity,
            plannerState: pendingPlanner ? planner : nil)
        if batch.isEmpty { return [] }
        pendingDevices = [:]
        pendingJobs = [:]
        pendingEvents = []
        pendingFleetReleases = [:]
        pendingVerifications = [:]
        pendingActivity = [:]
        pendingPlanner = false
        do {
            let events = try await store.commit(batch)
            for release in batch.fleetReleases { fleet.stored[release.id] = release }
            return events
        } catch {
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
        guard let device = devices[id], device.online, device.acceptsUpdates, var machine = active[id],
            let fw = firmware[machine.job.firmwareID]
        else { return }
        // The planner decides first offers and per-session re-offers of fleet jobs (consent,
        // gradual delivery, rate); downloads in progress are resumed here as for any job.
        if fleet.jobs[machine.job.id] != nil, machine.job.state == .queued || machine.job.state == .notified { return }
        switch machine.job.state {
        case .queued, .notified, .downloading, .downloaded, .verified:
            guard let notifier = notifier(for: id) else { return }
            notifier.offer(machine.job, firmware: fw, to: id)
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
                notifier(for: id)?.withdraw(job.id, from: id)
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

    /// The adapter a device last spoke through (MQTT when unknown).
    func notifier(for id: DeviceID) -> (any DeviceNotifier)? {
        notifiers[devices[id]?.transport ?? .mqtt] ?? notifiers[.mqtt]
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
