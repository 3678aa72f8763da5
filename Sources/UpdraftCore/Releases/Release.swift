import Foundation

/// Which devices a release targets.
public enum ReleaseTarget: Sendable, Equatable, Codable {
    case devices([DeviceID])
    case product(ProductID)

    public var summary: String {
        switch self {
        case .devices(let ids): "devices " + ids.map(\.rawValue).joined(separator: ",")
        case .product(let product): "product \(product.rawValue)"
        }
    }
}

/// One operator decision to put a firmware on a set of devices; it creates one job per device.
public struct Release: Sendable, Equatable, Codable {
    public var id: ReleaseID
    public var firmwareID: FirmwareID
    public var target: ReleaseTarget
    public var allowDowngrade: Bool
    public var createdAt: Date

    public init(id: ReleaseID = .random(), firmwareID: FirmwareID, target: ReleaseTarget, allowDowngrade: Bool = false, createdAt: Date) {
        self.id = id
        self.firmwareID = firmwareID
        self.target = target
        self.allowDowngrade = allowDowngrade
        self.createdAt = createdAt
    }
}

/// Why a targeted device got no job.
public enum SkipReason: Sendable, Equatable {
    case alreadyOnTarget
    case otherProduct(ProductID)
    case hasActiveJob(JobID)
    case downgrade(from: FirmwareVersion)

    public var text: String {
        switch self {
        case .alreadyOnTarget: "already runs the target version"
        case .otherProduct(let product): "is a \(product.rawValue) device, not this firmware's product"
        case .hasActiveJob(let job): "already has active job \(job.rawValue) (one job per device)"
        case .downgrade(let version):
            "runs \(version.rawValue), which is newer: a downgrade needs --allow-downgrade"
        }
    }
}

/// The result of planning a release: the jobs to create and the devices left out, with why.
public struct ReleasePlan: Sendable, Equatable {
    public var release: Release
    public var jobs: [Job]
    public var skipped: [(DeviceID, SkipReason)]
    /// Devices named by the operator that never connected: they get a job that waits for them.
    public var unknownDevices: [DeviceID]

    public static func == (lhs: ReleasePlan, rhs: ReleasePlan) -> Bool {
        lhs.release == rhs.release && lhs.jobs == rhs.jobs && lhs.unknownDevices == rhs.unknownDevices
            && lhs.skipped.map(\.0) == rhs.skipped.map(\.0) && lhs.skipped.map(\.1) == rhs.skipped.map(\.1)
    }
}

/// Pure release planning: decides, from a snapshot of the fleet, which devices get a job.
public enum ReleasePlanner {
    /// - Parameters:
    ///   - devices: the targeted devices that exist in the registry.
    ///   - activeJobs: the active job of each targeted device that has one.
    ///   - sequenceOf: the catalog sequence of a (product, version), if that version is in the catalog.
    public static func plan(
        release: Release, firmware: Firmware, devices: [DeviceID: Device], activeJobs: [DeviceID: JobID],
        sequenceOf: (ProductID, FirmwareVersion) -> Int64?
    ) -> ReleasePlan {
        let targets: [DeviceID]
        switch release.target {
        case .devices(let ids):
            var seen = Set<DeviceID>()
            targets = ids.filter { seen.insert($0).inserted }
        case .product(let product):
            targets = devices.values.filter { $0.product == product }.map(\.id).sorted()
        }
        var plan = ReleasePlan(release: release, jobs: [], skipped: [], unknownDevices: [])
        for id in targets {
            let device = devices[id]
            if device == nil { plan.unknownDevices.append(id) }
            if let reason = skipReason(
                device: device, firmware: firmware, activeJob: activeJobs[id], allowDowngrade: release.allowDowngrade,
                sequenceOf: sequenceOf)
            {
                plan.skipped.append((id, reason))
                continue
            }
            plan.jobs.append(
                Job(
                    releaseID: release.id, deviceID: id, firmwareID: firmware.id, targetVersion: firmware.version,
                    createdAt: release.createdAt))
        }
        return plan
    }

    static func skipReason(
        device: Device?, firmware: Firmware, activeJob: JobID?, allowDowngrade: Bool,
        sequenceOf: (ProductID, FirmwareVersion) -> Int64?
    ) -> SkipReason? {
        if let activeJob { return .hasActiveJob(activeJob) }
        guard let device, let product = device.product else { return nil }
        if product != firmware.product { return .otherProduct(product) }
        guard let version = device.version else { return nil }
        if version == firmware.version { return .alreadyOnTarget }
        if !allowDowngrade, let current = sequenceOf(product, version), current > firmware.sequence {
            return .downgrade(from: version)
        }
        return nil
    }
}

extension ReleasePlan {
    /// Why this plan must not be stored, or nil: a release never quietly does less than
    /// the operator asked. Device ids nobody ever saw (a typo would otherwise add a
    /// phantom device and a job that waits forever) need `allowUnknown`; a downgrade
    /// without --allow-downgrade of a named device, or a release that would create no
    /// job because every device runs a newer version, is refused instead of stored empty.
    public func refusal(allowUnknown: Bool) -> UpdraftError? {
        if !allowUnknown, let error = UpdraftError.unknownDevices(unknownDevices) { return error }
        let downgrades = skipped.compactMap { device, reason -> String? in
            guard case .downgrade(let version) = reason else { return nil }
            return "\(device.rawValue) runs \(version.rawValue)"
        }
        let named = if case .devices = release.target { true } else { false }
        guard !downgrades.isEmpty, named || jobs.isEmpty else { return nil }
        return UpdraftError(
            "downgrade_refused",
            "\(release.firmwareID) would be a downgrade: \(downgrades.prefix(10).joined(separator: ", "))\(downgrades.count > 10 ? " and \(downgrades.count - 10) more" : ""), a newer version. Nothing was created; pass --allow-downgrade to downgrade them.")
    }
}

extension UpdraftError {
    /// Device ids that are not in the registry, or nil when there are none.
    public static func unknownDevices(_ ids: [DeviceID]) -> UpdraftError? {
        guard !ids.isEmpty else { return nil }
        let list = ids.prefix(10).map(\.rawValue).joined(separator: ", ") + (ids.count > 10 ? " and \(ids.count - 10) more" : "")
        return UpdraftError(
            "unknown_devices",
            "No device \(list) has ever connected. Check the ids (`updraft device list`); pass --allow-unknown to name devices before they first connect. Nothing was created.")
    }
}
