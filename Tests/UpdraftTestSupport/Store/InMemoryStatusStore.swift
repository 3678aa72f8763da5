import Foundation
import Synchronization
import UpdraftCore

/// A `StatusStore` held in memory, for tests of what sits above the store (the engine)
/// without a file: it passes the same ``StoreContract`` as the SQLite store.
///
/// Every write runs on a copy of the state, taken under one lock, and replaces the state
/// only when it finished: a throw leaves nothing behind, as a rolled-back transaction.
/// The constraints the SQLite schema holds (one active job per device, jobs referring to
/// a device, release and firmware it has) are checked by hand with the same errors.
package final class InMemoryStatusStore: StatusStore, Sendable {
    private let shared: SharedState

    /// An empty store.
    package convenience init() {
        self.init(sharing: SharedState())
    }

    private init(sharing shared: SharedState) {
        self.shared = shared
    }

    /// Another handle on the same data, as the CLI next to a running gateway.
    package func openAnother() -> InMemoryStatusStore {
        InMemoryStatusStore(sharing: shared)
    }

    func read<T: Sendable>(_ body: (InMemoryState) throws -> T) throws -> T {
        try shared.state.withLock { try body($0) }
    }

    func write<T: Sendable>(_ body: (inout InMemoryState) throws -> T) throws -> T {
        try shared.state.withLock { state in
            var next = state
            let result = try body(&next)
            state = next
            return result
        }
    }

    // MARK: Catalog

    package func addFirmware(
        product: ProductID, version: FirmwareVersion, sha256: String, actor: String?,
        make: @Sendable (_ sequence: Int64) throws -> Firmware
    ) async throws -> FirmwareAddResult {
        try write { state in try state.addFirmware(product: product, version: version, sha256: sha256, actor: actor, make: make) }
    }

    package func deleteFirmware(_ id: FirmwareID, actor: String?) async throws -> Firmware {
        try write { state in try state.deleteFirmware(id, actor: actor) }
    }

    package func firmware(id: FirmwareID) async throws -> Firmware? {
        try read { $0.firmware[id] }
    }

    package func firmwareList(product: ProductID?) async throws -> [Firmware] {
        try read { state in
            state.firmware.values.filter { product == nil || $0.product == product }
                .sorted { ($0.product.rawValue, $0.sequence) < ($1.product.rawValue, $1.sequence) }
        }
    }

    // MARK: Registry

    package func device(_ id: DeviceID) async throws -> Device? {
        try read { $0.devices[id] }
    }

    package func devices() async throws -> [Device] {
        try read { $0.devices.values.sorted { $0.id.rawValue < $1.id.rawValue } }
    }

    // MARK: Releases and jobs

    package func createRelease(_ release: Release, firmware: Firmware, actor: String?) async throws -> ReleasePlan {
        try write { state in try state.createRelease(release, firmware: firmware, actor: actor) }
    }

    package func releases() async throws -> [Release] {
        try read { state in
            state.releases.values.filter { state.fleetReleases[$0.release.id] == nil }
                .sorted { ($0.release.createdAt, $0.row) > ($1.release.createdAt, $1.row) }.map(\.release)
        }
    }

    package func job(_ id: JobID) async throws -> Job? {
        try read { $0.jobs[id]?.job }
    }

    package func jobs(release: ReleaseID) async throws -> [Job] {
        try read { $0.jobsInOrder { $0.releaseID == release } }
    }

    package func activeJobs() async throws -> [Job] {
        try read { $0.jobsInOrder { !$0.state.isTerminal } }
    }

    package func jobCounts(states: [JobState]) async throws -> [JobState: Int] {
        try read { state in
            state.jobsInOrder { states.contains($0.state) }.reduce(into: [:]) { $0[$1.state, default: 0] += 1 }
        }
    }

    // MARK: Gateway writes

    @discardableResult
    package func commit(_ batch: StoreBatch) async throws -> [UpdraftEvent] {
        if batch.isEmpty { return [] }
        return try write { state in try state.apply(batch, isolatingRefusals: false).events }
    }

    package func commitIsolatingRefusals(_ batch: StoreBatch) async throws -> CommitResult {
        if batch.isEmpty { return CommitResult() }
        return try write { state in try state.apply(batch, isolatingRefusals: true) }
    }

    // MARK: Fleet

    package func fleetProfiles() async throws -> [DeviceID: DeviceFleetProfile] {
        try read { $0.fleetProfiles }
    }

    package func fleetReleases() async throws -> [FleetRelease] {
        try read { state in
            state.fleetReleases.values.sorted { ($0.release.createdAt, $0.row) < ($1.release.createdAt, $1.row) }
                .map(\.release)
        }
    }

    package func fleetRelease(_ id: ReleaseID) async throws -> FleetRelease? {
        try read { $0.fleetReleases[id]?.release }
    }

    package func verification(firmwareID: FirmwareID) async throws -> FirmwareVerification? {
        try read { $0.verifications[firmwareID] }
    }

    package func verifications() async throws -> [FirmwareVerification] {
        try read { $0.verifications.values.sorted { $0.firmwareID < $1.firmwareID } }
    }

    package func jobActivity() async throws -> [JobID: JobActivity] {
        try read { state in
            state.activity.filter { id, _ in state.jobs[id].map { !$0.job.state.isTerminal } ?? false }
        }
    }

    package func plannerState() async throws -> FleetPlanner? {
        try read { $0.planner }
    }

    @discardableResult
    package func updateFleetRelease(
        _ id: ReleaseID, _ body: @Sendable (inout FleetRelease) throws -> [UpdraftEvent]
    ) async throws -> FleetRelease {
        try write { state in
            guard var release = state.fleetReleases[id]?.release else {
                throw UpdraftError.notFound("release", id.rawValue, hint: "List releases with `updraft release list`.")
            }
            let events = try body(&release)
            try state.upsert(release)
            state.append(events)
            return release
        }
    }

    @discardableResult
    package func updateFleetProfile(
        _ device: DeviceID, _ body: @Sendable (inout DeviceFleetProfile) throws -> StoreBatch
    ) async throws -> DeviceFleetProfile {
        try write { state in
            var profile = state.fleetProfiles[device] ?? .default
            let batch = try body(&profile)
            state.ensureDevice(device)
            state.fleetProfiles[device] = profile
            _ = try state.apply(batch, isolatingRefusals: false)
            return profile
        }
    }

    @discardableResult
    package func updateJob(_ id: JobID, _ body: @Sendable (inout Job) throws -> StoreBatch) async throws -> Job {
        try write { state in
            guard var job = state.jobs[id]?.job else {
                throw UpdraftError.notFound("job", id.rawValue, hint: "Jobs are listed by `updraft release show RELEASE`.")
            }
            var batch = try body(&job)
            batch.jobs.insert(job, at: 0)
            _ = try state.apply(batch, isolatingRefusals: false)
            return job
        }
    }

    @discardableResult
    package func updateVerification(
        firmwareID: FirmwareID, _ body: @Sendable (inout FirmwareVerification) throws -> StoreBatch
    ) async throws -> FirmwareVerification {
        try write { state in
            guard state.firmware[firmwareID] != nil else {
                throw UpdraftError.notFound("firmware", firmwareID.rawValue, hint: "List the catalog with `updraft firmware list`.")
            }
            var verification = state.verifications[firmwareID] ?? FirmwareVerification(firmwareID: firmwareID)
            let batch = try body(&verification)
            state.verifications[firmwareID] = verification
            _ = try state.apply(batch, isolatingRefusals: false)
            return verification
        }
    }

    // MARK: Event log

    package func events(after sequence: Int64, limit: Int) async throws -> [UpdraftEvent] {
        guard limit > 0 else { return [] }
        return try read { state in Array(state.events(after: sequence).prefix(limit)) }
    }

    package func events(after sequence: Int64, through last: Int64, kinds: Set<EventKind>) async throws -> [UpdraftEvent] {
        try read { state in state.events(after: sequence).filter { $0.sequence <= last && kinds.contains($0.kind) } }
    }

    package func lastEventSequence() async throws -> Int64 {
        try read { Int64($0.events.count) }
    }

    package func eventCursor(_ name: String) async throws -> Int64? {
        try read { $0.cursors[name] }
    }

    package func saveEventCursor(_ name: String, _ sequence: Int64) async throws {
        try write { state in state.cursors[name] = max(state.cursors[name] ?? sequence, sequence) }
    }
}

/// The data all handles of one in-memory store share.
private final class SharedState: Sendable {
    let state = Mutex(InMemoryState())
}
