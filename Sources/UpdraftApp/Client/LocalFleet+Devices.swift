import Foundation
import UpdraftCore

extension LocalFleet {
    public func devices(_ query: DeviceQuery) async throws -> [DeviceView] {
        let profiles = try await ops.store.fleetProfiles()
        let jobs = try await activeJobs()
        return try await ops.store.devices().map { DeviceView($0, profiles[$0.id] ?? .default, job: jobs[$0.id]) }
            .filter(query.matches).sorted { $0.id < $1.id }
    }

    /// Each device's active job (the latest, should there be two).
    private func activeJobs() async throws -> [DeviceID: Job] {
        Dictionary(try await ops.store.activeJobs().map { ($0.deviceID, $0) }, uniquingKeysWith: { a, b in a.updatedAt >= b.updatedAt ? a : b })
    }

    public func device(_ id: DeviceID, history: Int) async throws -> DeviceView {
        let (entry, desired) = try await ops.desiredFirmware(id)
        let job = try await activeJobs()[id]
        var view = DeviceView(entry.device, entry.profile, job: job)
        (view.shouldRun, view.activeJob) = (desired.explanation, job.map(JobView.init))
        var events: [UpdraftEvent] = []
        var cursor: Int64 = 0
        while history > 0 {
            let page = try await ops.store.events(after: cursor, limit: 5000)
            events += page.filter { $0.deviceID == id && $0.kind != .deviceOnline && $0.kind != .deviceOffline }
            if events.count > history { events.removeFirst(events.count - history) }
            guard let last = page.last, page.count == 5000 else { break }
            cursor = last.sequence
        }
        view.history = events
        return view
    }

    public func lock(_ id: DeviceID, to firmware: FirmwareID, atNextSession: Bool, allowUnknown: Bool) async throws -> String {
        if !allowUnknown, let unknown = UpdraftError.unknownDevices(try await ops.unknownDevices([id])) { throw unknown }
        let profile = try await ops.lock(id, to: firmware, delivery: atNextSession ? .nextSession : .now)
        return profile.lock?.firmware.id.rawValue ?? firmware.rawValue
    }

    public func unlock(_ id: DeviceID) async throws -> String? { try await ops.unlock(id)?.firmware.id.rawValue }

    public func setGroups(_ id: DeviceID, add: [GroupID], remove: [GroupID]) async throws -> [String] {
        try await ops.setGroups(id, add: add, remove: remove).groups.map(\.rawValue)
    }

    public func setDevelopment(_ id: DeviceID, _ on: Bool) async throws { _ = try await ops.setDevelopment(id, on) }

    public func decommission(_ id: DeviceID) async throws -> Operations.Decommission { try await ops.decommissionDevice(id) }

    public func job(_ id: JobID) async throws -> JobView {
        guard let job = try await ops.store.job(id) else {
            throw UpdraftError.notFound("job", id.rawValue, hint: "Jobs are listed by `updraft release show RELEASE` and `updraft device show DEVICE`.")
        }
        return JobView(job)
    }

    public func cancelJob(_ id: JobID) async throws -> JobView { JobView(try await ops.cancelJob(id)) }

    public func versionStats(product: ProductID?, top: Int) async throws -> [VersionStatsRow] {
        let devices = try await ops.store.devices()
        let products = product.map { [$0] } ?? Set(devices.compactMap(\.product)).sorted()
        var rows: [VersionStatsRow] = []
        for product in products {
            let sequences = Dictionary(
                try await ops.store.firmwareList(product: product).map { ($0.version, $0.sequence) }, uniquingKeysWith: { a, _ in a })
            let d = FleetStatus.versionDistribution(product: product, devices: devices, top: top, sequenceOf: { sequences[$0] })
            rows.append(
                VersionStatsRow(
                    product: product.rawValue, total: d.total,
                    versions: d.top.map { .init(version: $0.version.rawValue, devices: $0.devices, fraction: $0.fraction) }, others: d.others,
                    unknown: d.unknown))
        }
        return rows
    }
}
