import Foundation

/// The durable status store: catalog, registry, releases, jobs and the event log.
/// SQLite implements it now and PostgreSQL later; nothing here assumes either.
///
/// Every method that changes state also appends the matching events to the event log in
/// the same transaction, so the log and the state never disagree.
public protocol StatusStore: WebhookStore {
    // MARK: Catalog

    /// Adds a firmware. Inside one transaction the store takes the next sequence number of
    /// the product and calls `make` with it to build (and sign) the entry, whose sequence
    /// may be that number or higher (a manifest signed elsewhere). Adding the same
    /// product, version and content again returns the existing entry; the same product and
    /// version with other content throws `firmware_conflict`. Its `firmware.added` event
    /// names `actor`.
    func addFirmware(
        product: ProductID, version: FirmwareVersion, sha256: String, actor: String?,
        make: @Sendable (_ sequence: Int64) throws -> Firmware
    ) async throws -> FirmwareAddResult
    func firmware(id: FirmwareID) async throws -> Firmware?
    func firmwareList(product: ProductID?) async throws -> [Firmware]
    /// Removes a firmware from the catalog (and its verification record) with a
    /// `firmware.deleted` event naming `actor`. Throws `firmware_in_use`, naming the
    /// release, when any release (one-off, fleet, lock or verification) refers to it: those
    /// are the history of what devices were sent. Throws `firmware_not_found` when absent.
    func deleteFirmware(_ id: FirmwareID, actor: String?) async throws -> Firmware

    // MARK: Registry

    func device(_ id: DeviceID) async throws -> Device?
    func devices() async throws -> [Device]

    // MARK: Releases and jobs

    /// Plans the release with ``ReleasePlanner`` against the fleet as it is inside the
    /// transaction, then stores the release, its jobs and their events.
    /// Its events name `actor`.
    func createRelease(_ release: Release, firmware: Firmware, actor: String?) async throws -> ReleasePlan
    func releases() async throws -> [Release]
    func job(_ id: JobID) async throws -> Job?
    func jobs(release: ReleaseID) async throws -> [Job]
    func activeJobs() async throws -> [Job]
    /// How many jobs are in each of `states` (a state with none is left out). For
    /// `/metrics`: it reads an index, not the jobs, so ask it for the few states you show.
    func jobCounts(states: [JobState]) async throws -> [JobState: Int]

    // MARK: Gateway writes

    /// Writes devices and jobs as given and appends the events; returns the events with
    /// their sequence numbers.
    @discardableResult
    func commit(_ batch: StoreBatch) async throws -> [UpdraftEvent]

    /// Writes a batch like ``commit(_:)``, except that a job the store refuses (a second
    /// active job for its device, a device, release or firmware it lacks) is left out,
    /// with its activity record, instead of failing the batch: the rest is written and
    /// the refused jobs come back with why. A failure that is not about one job (disk
    /// full, the write lock not obtained) still fails the whole batch.
    func commitIsolatingRefusals(_ batch: StoreBatch) async throws -> CommitResult

    // MARK: Fleet

    /// The fleet profile of every device that has one (devices without one have the default).
    func fleetProfiles() async throws -> [DeviceID: DeviceFleetProfile]
    /// Every fleet release (lock releases included), oldest first.
    func fleetReleases() async throws -> [FleetRelease]
    func fleetRelease(_ id: ReleaseID) async throws -> FleetRelease?
    /// The verification record of a firmware; `nil` when none was stored (unverified).
    func verification(firmwareID: FirmwareID) async throws -> FirmwareVerification?
    func verifications() async throws -> [FirmwareVerification]
    /// The engine's activity record of each active job that has one.
    func jobActivity() async throws -> [JobID: JobActivity]
    /// The planner's state (its rate limiters) as last committed.
    func plannerState() async throws -> FleetPlanner?

    /// Reads a fleet release, lets `body` change it, and writes it back with the events
    /// `body` returns, in one transaction. Throws `release_not_found` when it does not exist.
    @discardableResult
    func updateFleetRelease(
        _ id: ReleaseID, _ body: @Sendable (inout FleetRelease) throws -> [UpdraftEvent]
    ) async throws -> FleetRelease
    /// Reads a device's fleet profile (the default if none), lets `body` change it, and
    /// writes it, with the batch `body` returns (a lock's release, events), in one
    /// transaction. A device not in the registry gets a row.
    @discardableResult
    func updateFleetProfile(
        _ device: DeviceID, _ body: @Sendable (inout DeviceFleetProfile) throws -> StoreBatch
    ) async throws -> DeviceFleetProfile
    /// Reads a firmware's verification (a fresh one if none), lets `body` change it, and
    /// writes it with the batch `body` returns, in one transaction.
    @discardableResult
    func updateVerification(
        firmwareID: FirmwareID, _ body: @Sendable (inout FirmwareVerification) throws -> StoreBatch
    ) async throws -> FirmwareVerification

    // MARK: Event log

    func events(after sequence: Int64, limit: Int) async throws -> [UpdraftEvent]
    /// The events after `sequence` up to and including `last` whose kind is one of `kinds`.
    func events(after sequence: Int64, through last: Int64, kinds: Set<EventKind>) async throws -> [UpdraftEvent]
    func lastEventSequence() async throws -> Int64

    /// The position a reader of the event log saved under `name` (the last sequence it
    /// has handled), or `nil` when it never saved one.
    func eventCursor(_ name: String) async throws -> Int64?
    /// Saves the position of the reader `name`. Positions only move forward: saving one
    /// lower than the stored one leaves the stored one.
    func saveEventCursor(_ name: String, _ sequence: Int64) async throws

    // MARK: API tokens

    /// Stores a new token. Throws `token_exists` when its name is taken (a revoked
    /// token's name stays taken: events name tokens as their actors).
    func createToken(_ token: AccessToken) async throws
    /// Every token, revoked ones included, by name.
    func tokens() async throws -> [AccessToken]
    /// The token whose secret has this SHA-256 (revoked or not); `nil` when none has.
    func token(secretSHA256: String) async throws -> AccessToken?
    /// Marks a token revoked at `date` (a revoked one keeps its first date) and returns
    /// it. Throws `token_not_found` when no token has that name.
    @discardableResult
    func revokeToken(_ name: TokenName, at date: Date) async throws -> AccessToken

    // MARK: Operators' changes

    /// Reads a job, lets `body` change it, and writes it with the batch `body` returns, in
    /// one transaction: a change that depends on the job's state (cancel only while it is
    /// active) sees the state it writes over. Throws `job_not_found` when it does not exist.
    @discardableResult
    func updateJob(_ id: JobID, _ body: @Sendable (inout Job) throws -> StoreBatch) async throws -> Job
}

extension UpdraftError {
    public static func tokenExists(_ name: TokenName) -> UpdraftError {
        UpdraftError("token_exists", "A token named \(name) exists (or existed: revoked names stay taken). Choose another name.")
    }

    public static func tokenNotFound(_ name: TokenName) -> UpdraftError {
        .notFound("token", name.rawValue, hint: "List them with `updraft token list`.")
    }
}

extension StatusStore {
    /// ``addFirmware(product:version:sha256:actor:make:)`` by no operator (tests, tools).
    public func addFirmware(
        product: ProductID, version: FirmwareVersion, sha256: String, make: @Sendable (_ sequence: Int64) throws -> Firmware
    ) async throws -> FirmwareAddResult {
        try await addFirmware(product: product, version: version, sha256: sha256, actor: nil, make: make)
    }

    /// ``createRelease(_:firmware:actor:)`` by no operator (tests, tools).
    public func createRelease(_ release: Release, firmware: Firmware) async throws -> ReleasePlan {
        try await createRelease(release, firmware: firmware, actor: nil)
    }
}

/// What ``StatusStore/commitIsolatingRefusals(_:)`` wrote and what it left out.
public struct CommitResult: Sendable, Equatable {
    /// The batch's events with their sequence numbers.
    public var events: [UpdraftEvent]
    /// The jobs the store refused, each with why; everything else in the batch was written.
    public var refused: [RefusedJob]

    public init(events: [UpdraftEvent] = [], refused: [RefusedJob] = []) {
        (self.events, self.refused) = (events, refused)
    }
}

/// A job the store would not write, and why (`active_job_exists`, `store_reference`).
public struct RefusedJob: Sendable, Equatable {
    public var job: Job
    public var error: UpdraftError

    public init(job: Job, error: UpdraftError) {
        (self.job, self.error) = (job, error)
    }
}

public enum FirmwareAddResult: Sendable, Equatable {
    case added(Firmware)
    case existing(Firmware)

    public var firmware: Firmware {
        switch self {
        case .added(let firmware), .existing(let firmware): firmware
        }
    }
}

/// A batch of gateway writes, committed in one transaction.
public struct StoreBatch: Sendable, Equatable {
    public var devices: [Device]
    public var jobs: [Job]
    public var events: [UpdraftEvent]
    /// Fleet releases to insert or replace. A new one also gets a `releases` row (its jobs
    /// refer to it) and a registry row for each device it names that the registry lacks.
    public var fleetReleases: [FleetRelease]
    /// The version of each release the writer last read or wrote. A release whose stored
    /// version differs (an operator changed it meanwhile) is left as stored: the writer
    /// learns of the change from the event log and reloads it.
    public var fleetReleaseBases: [ReleaseID: FleetRelease]
    public var verifications: [FirmwareVerification]
    /// Activity records to store, per job (written after the jobs they belong to).
    public var activity: [JobID: JobActivity]
    public var plannerState: FleetPlanner?

    public init(
        devices: [Device] = [], jobs: [Job] = [], events: [UpdraftEvent] = [], fleetReleases: [FleetRelease] = [],
        fleetReleaseBases: [ReleaseID: FleetRelease] = [:], verifications: [FirmwareVerification] = [],
        activity: [JobID: JobActivity] = [:], plannerState: FleetPlanner? = nil
    ) {
        (self.devices, self.jobs, self.events, self.fleetReleases) = (devices, jobs, events, fleetReleases)
        (self.fleetReleaseBases, self.verifications, self.activity) = (fleetReleaseBases, verifications, activity)
        self.plannerState = plannerState
    }

    public var isEmpty: Bool {
        devices.isEmpty && jobs.isEmpty && events.isEmpty && fleetReleases.isEmpty && verifications.isEmpty
            && activity.isEmpty && plannerState == nil
    }
}

/// Where firmware images are kept, by SHA-256 (content-addressed).
public protocol FirmwareImageStore: Sendable {
    func put(_ bytes: [UInt8], sha256: String) throws
    func get(sha256: String) throws -> [UInt8]
}
