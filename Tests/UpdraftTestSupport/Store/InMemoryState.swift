import Foundation
import UpdraftCore

/// The tables of ``InMemoryStatusStore``, as values: a write works on a copy.
///
/// `row` numbers keep SQLite's insertion order (its rowid), which orders rows of equal
/// creation time; an update keeps the row's number, as an upsert keeps the rowid.
struct InMemoryState: Sendable {
    struct Row<Value: Sendable>: Sendable {
        var release: Value
        var row: Int
    }

    struct JobRow: Sendable {
        var job: Job
        var row: Int
    }

    var firmware: [FirmwareID: Firmware] = [:]
    var devices: [DeviceID: Device] = [:]
    /// Every release: plain ones and the `releases` row of each fleet release.
    var releases: [ReleaseID: Row<Release>] = [:]
    var jobs: [JobID: JobRow] = [:]
    var events: [UpdraftEvent] = []
    var cursors: [String: Int64] = [:]
    var tokens: [TokenName: AccessToken] = [:]
    var webhooks: [Int64: Webhook] = [:]
    var lastWebhookID: Int64 = 0
    /// Per webhook, oldest first.
    var webhookDeliveries: [Int64: [WebhookDelivery]] = [:]
    var fleetReleases: [ReleaseID: Row<FleetRelease>] = [:]
    var fleetProfiles: [DeviceID: DeviceFleetProfile] = [:]
    var verifications: [FirmwareID: FirmwareVerification] = [:]
    var activity: [JobID: JobActivity] = [:]
    var planner: FleetPlanner?
    private var lastRow = 0

    private mutating func nextRow() -> Int {
        lastRow += 1
        return lastRow
    }

    // MARK: Reads

    func jobsInOrder(_ isIncluded: (Job) -> Bool) -> [Job] {
        jobs.values.filter { isIncluded($0.job) }.sorted { ($0.job.createdAt, $0.row) < ($1.job.createdAt, $1.row) }
            .map(\.job)
    }

    /// The events after `sequence`: the log is gap-free from 1, so sequence n is at n - 1.
    func events(after sequence: Int64) -> ArraySlice<UpdraftEvent> {
        events[min(events.count, Int(max(0, sequence)))...]
    }

    // MARK: Catalog

    mutating func addFirmware(
        product: ProductID, version: FirmwareVersion, sha256: String, actor: String?, make: (_ sequence: Int64) throws -> Firmware
    ) throws -> FirmwareAddResult {
        if let existing = firmware.values.first(where: { $0.product == product && $0.version == version }) {
            guard existing.sha256.lowercased() == sha256.lowercased() else {
                throw UpdraftError(
                    "firmware_conflict",
                    "\(existing.id) already exists with other content (sha256 \(existing.sha256.prefix(16))…). Pick a new version; versions are immutable."
                )
            }
            return .existing(existing)
        }
        let sequence = (firmware.values.filter { $0.product == product }.map(\.sequence).max() ?? 0) + 1
        let made = try make(sequence)
        // A manifest signed elsewhere may carry a higher sequence than the next one.
        let expected = (product, version, sha256.lowercased())
        if (made.product, made.version, made.sha256.lowercased()) != expected || made.sequence < sequence {
            throw UpdraftError(
                "firmware_mismatch",
                "Internal error: the firmware built for \(FirmwareID(product: product, version: version)) sequence \(sequence) does not match it. Please report this."
            )
        }
        firmware[made.id] = made
        append([
            UpdraftEvent(
                kind: .firmwareAdded, time: made.createdAt, firmwareID: made.id,
                detail: "sequence \(made.sequence), \(made.size) bytes, sha256 \(made.sha256)", actor: actor)
        ])
        return .added(made)
    }

    mutating func deleteFirmware(_ id: FirmwareID, actor: String?) throws -> Firmware {
        guard let found = firmware[id] else {
            throw UpdraftError.notFound("firmware", id.rawValue, hint: "List the catalog with `updraft firmware list`.")
        }
        if let user = releases.values.map(\.release).filter({ $0.firmwareID == id }).min(by: { $0.createdAt < $1.createdAt }) {
            throw UpdraftError.firmwareInUse(id, release: user.id)
        }
        firmware[id] = nil
        verifications[id] = nil
        append([UpdraftEvent(kind: .firmwareDeleted, time: Date(), firmwareID: id, detail: "sha256 \(found.sha256)", actor: actor)])
        return found
    }

    // MARK: Releases

    mutating func createRelease(_ release: Release, firmware given: Firmware, actor: String?) throws -> ReleasePlan {
        guard release.firmwareID == given.id else {
            throw UpdraftError(
                "release_firmware_mismatch",
                "Internal error: release \(release.id) names firmware \(release.firmwareID) but was planned with \(given.id). Please report this."
            )
        }
        guard let stored = firmware[given.id] else {
            throw UpdraftError.notFound(
                "firmware", given.id.rawValue, hint: "Add it with `updraft firmware add`, or list the catalog with `updraft firmware list`.")
        }
        let targeted: [DeviceID: Device]
        switch release.target {
        case .devices(let ids): targeted = devices.filter { Set(ids).contains($0.key) }
        case .product(let product): targeted = devices.filter { $0.value.product == product }
        }
        let targetedIDs: Set<DeviceID> =
            if case .devices(let ids) = release.target { Set(ids) } else { Set(targeted.keys) }
        var active: [DeviceID: JobID] = [:]
        for row in jobs.values where !row.job.state.isTerminal && targetedIDs.contains(row.job.deviceID) {
            active[row.job.deviceID] = row.job.id
        }
        let catalog = firmware
        let plan = ReleasePlanner.plan(
            release: release, firmware: stored, devices: targeted, activeJobs: active,
            sequenceOf: { product, version in catalog[FirmwareID(product: product, version: version)]?.sequence })

        for id in plan.unknownDevices { ensureDevice(id) }
        guard releases[release.id] == nil else {
            throw UpdraftError("store_failed", "The status store already has a release \(release.id).")
        }
        releases[release.id] = Row(release: release, row: nextRow())
        for job in plan.jobs { try upsert(job) }
        append(
            [
                UpdraftEvent(
                    kind: .releaseCreated, time: release.createdAt, releaseID: release.id, firmwareID: stored.id,
                    detail:
                        "\(release.target.summary): \(plan.jobs.count) jobs, \(plan.skipped.count) skipped, \(plan.unknownDevices.count) unknown devices"
                )
            ].map { $0.by(actor) } + plan.jobs.map { UpdraftEvent.job(.jobCreated, $0, time: release.createdAt).by(actor) })
        return plan
    }

    // MARK: Writes

    /// The body of `commit`: a job that breaks a constraint fails the batch, or, when
    /// isolating, is left out with its activity.
    mutating func apply(_ batch: StoreBatch, isolatingRefusals: Bool) throws -> CommitResult {
        for device in batch.devices { devices[device.id] = device }
        for release in batch.fleetReleases {
            if let base = batch.fleetReleaseBases[release.id], let stored = fleetReleases[release.id]?.release, stored != base {
                continue
            }
            try upsert(release)
        }
        for verification in batch.verifications {
            guard firmware[verification.firmwareID] != nil else { throw Self.missingReference("firmware \(verification.firmwareID)") }
            verifications[verification.firmwareID] = verification
        }
        // Terminal jobs first: a batch that ends a device's job and creates its next one
        // must free the one-active-job slot before taking it.
        var refused: [RefusedJob] = []
        for job in batch.jobs.filter(\.state.isTerminal) + batch.jobs.filter({ !$0.state.isTerminal }) {
            do {
                try upsert(job)
            } catch let error as UpdraftError where isolatingRefusals {
                refused.append(RefusedJob(job: job, error: error))
            }
        }
        let skipped = Set(refused.map(\.job.id))
        for (job, record) in batch.activity where !skipped.contains(job) {
            guard jobs[job] != nil else { throw Self.missingReference("job \(job)") }
            activity[job] = record
        }
        // Ended jobs drop their activity: it only matters while a job runs.
        for job in batch.jobs where job.state.isTerminal { activity[job.id] = nil }
        if let state = batch.plannerState { planner = state }
        return CommitResult(events: append(batch.events), refused: refused)
    }

    mutating func upsert(_ job: Job) throws {
        if !job.state.isTerminal,
            let other = jobs.values.first(where: { $0.job.deviceID == job.deviceID && $0.job.id != job.id && !$0.job.state.isTerminal })
        {
            throw UpdraftError(
                "active_job_exists",
                "Device \(job.deviceID) already has active job \(other.job.id); job \(job.id) cannot be active too (one job per device). Cancel or finish the other job first."
            )
        }
        guard devices[job.deviceID] != nil, releases[job.releaseID] != nil, firmware[job.firmwareID] != nil else {
            throw UpdraftError(
                "store_reference",
                "Job \(job.id) refers to a device (\(job.deviceID)), release (\(job.releaseID)) or firmware (\(job.firmwareID)) that the store does not have."
            )
        }
        let row = jobs[job.id]?.row ?? nextRow()
        jobs[job.id] = JobRow(job: job, row: row)
    }

    /// A fleet release, with the `releases` row its jobs refer to and a registry row for
    /// each device it names.
    mutating func upsert(_ release: FleetRelease) throws {
        guard firmware[release.firmware.id] != nil else { throw Self.missingReference("firmware \(release.firmware.id)") }
        if releases[release.id] == nil {
            let plain = Release(
                id: release.id, firmwareID: release.firmware.id, target: .devices([]), allowDowngrade: release.allowDowngrade,
                createdAt: release.createdAt)
            releases[release.id] = Row(release: plain, row: nextRow())
        }
        if case .devices(let ids) = release.target {
            for id in ids { ensureDevice(id) }
        }
        let row = fleetReleases[release.id]?.row ?? nextRow()
        fleetReleases[release.id] = Row(release: release, row: row)
    }

    /// Devices named before they ever connected: the registry knows them from now on.
    mutating func ensureDevice(_ id: DeviceID) {
        if devices[id] == nil { devices[id] = Device(id: id) }
    }

    /// Appends events with the next sequence numbers; returns them numbered.
    @discardableResult
    mutating func append(_ new: [UpdraftEvent]) -> [UpdraftEvent] {
        var next = Int64(events.count) + 1
        let numbered = new.map { event in
            var event = event
            event.sequence = next
            next += 1
            return event
        }
        events += numbered
        return numbered
    }

    static func missingReference(_ what: String) -> UpdraftError {
        UpdraftError("store_reference", "The status store has no \(what).")
    }
}
