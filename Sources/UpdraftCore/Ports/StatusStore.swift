import Foundation

/// The durable status store: catalog, registry, releases, jobs and the event log.
/// SQLite implements it now and PostgreSQL later; nothing here assumes either.
///
/// Every method that changes state also appends the matching events to the event log in
/// the same transaction, so the log and the state never disagree.
public protocol StatusStore: Sendable {
    // MARK: Catalog

    /// Adds a firmware. Inside one transaction the store takes the next sequence number of
    /// the product and calls `make` with it to build (and sign) the entry. Adding the same
    /// product, version and content again returns the existing entry; the same product and
    /// version with other content throws `firmware_conflict`.
    func addFirmware(
        product: ProductID, version: FirmwareVersion, sha256: String,
        make: @Sendable (_ sequence: Int64) throws -> Firmware
    ) async throws -> FirmwareAddResult
    func firmware(id: String) async throws -> Firmware?
    func firmwareList(product: ProductID?) async throws -> [Firmware]

    // MARK: Registry

    func device(_ id: DeviceID) async throws -> Device?
    func devices() async throws -> [Device]

    // MARK: Releases and jobs

    /// Plans the release with ``ReleasePlanner`` against the fleet as it is inside the
    /// transaction, then stores the release, its jobs and their events.
    func createRelease(_ release: Release, firmware: Firmware) async throws -> ReleasePlan
    func releases() async throws -> [Release]
    func job(_ id: JobID) async throws -> Job?
    func jobs(release: ReleaseID) async throws -> [Job]
    func activeJobs() async throws -> [Job]

    // MARK: Gateway writes

    /// Writes devices and jobs as given and appends the events; returns the events with
    /// their sequence numbers.
    @discardableResult
    func commit(_ batch: StoreBatch) async throws -> [UpdraftEvent]

    // MARK: Event log

    func events(after sequence: Int64, limit: Int) async throws -> [UpdraftEvent]
    func lastEventSequence() async throws -> Int64
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

    public init(devices: [Device] = [], jobs: [Job] = [], events: [UpdraftEvent] = []) {
        self.devices = devices
        self.jobs = jobs
        self.events = events
    }

    public var isEmpty: Bool { devices.isEmpty && jobs.isEmpty && events.isEmpty }
}

/// Where firmware images are kept, by SHA-256 (content-addressed).
public protocol FirmwareImageStore: Sendable {
    func put(_ bytes: [UInt8], sha256: String) throws
    func get(sha256: String) throws -> [UInt8]
}

/// Sends messages to devices; implemented by each protocol adapter.
public protocol DeviceNotifier: Sendable {
    /// Sends the job offer (the signed manifest and how to download) to a device. Must
    /// not block: the adapter queues it.
    func offer(_ job: Job, firmware: Firmware, to device: DeviceID)
}
