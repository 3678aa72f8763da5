import Foundation

/// Which firmware a device should run, which release (or lock) says so, and why.
public enum DesiredFirmware: Sendable, Equatable {
    case firmware(FirmwareRef, release: ReleaseID, reason: Reason)
    case none(NoneReason)

    /// Which rule chose the firmware, highest precedence first.
    public enum Reason: Sendable, Equatable, Codable {
        case locked(LockDelivery)
        case deviceList
        case group(GroupID)
        case productDefault
    }

    public enum NoneReason: String, Sendable, Equatable, Codable, CaseIterable {
        /// The operator revoked the device (`updraft device revoke`): nothing until it is
        /// provisioned again, a lock included.
        case revoked
        /// A development device that is not locked and not named by a device release.
        case development
        /// Locked to firmware of another product: the lock still wins, so nothing applies.
        case lockedToOtherProduct
        /// The device has not said which product it is; only a lock or a device release
        /// can name it before it does.
        case unknownProduct
        case noRelease
    }

    public var firmware: FirmwareRef? {
        if case .firmware(let firmware, _, _) = self { return firmware }
        return nil
    }

    public var releaseID: ReleaseID? {
        if case .firmware(_, let release, _) = self { return release }
        return nil
    }

    /// One line for `updraft device show`.
    public var explanation: String {
        switch self {
        case .firmware(let firmware, let release, let reason):
            let why =
                switch reason {
                case .locked(let delivery): "locked (\(delivery == .now ? "now" : "at next session"))"
                case .deviceList: "named by device release \(release)"
                case .group(let group): "highest release to group \(group) (release \(release))"
                case .productDefault: "product default (release \(release))"
                }
            return "\(firmware.id): \(why)"
        case .none(let reason):
            switch reason {
            case .revoked: return "none: revoked; `updraft device provision` re-admits it"
            case .development: return "none: development devices get no automatic updates; lock it or name it in a device release"
            case .lockedToOtherProduct: return "none: locked to firmware of another product; unlock it or lock it to firmware of its product"
            case .unknownProduct: return "none: the device has not announced its product yet"
            case .noRelease: return "none: no release targets it and its product has no default"
            }
        }
    }
}

/// The one precedence rule set (Particle's, extended with device releases):
///
/// 0. A revoked device gets nothing (see ``DeviceFleetProfile/revokedAt``).
/// 1. A device locked to a firmware keeps it, above all else.
/// 2. A release naming the device (a device list, including verification releases) is an
///    explicit per-device assignment: it comes next, and it reaches development devices
///    too, since that is how test devices get new builds. Among several, the newest
///    release wins: a later explicit decision replaces an earlier one (a deliberate
///    rollback included).
/// 3. Development devices get nothing automatically: they stop here.
/// 4. The highest firmware (by the product's sequence number) released to any of the
///    device's groups. Ties go to the earliest release of that firmware.
/// 5. The product default; if several are in force, the newest, since setting a default
///    replaces the previous one.
/// 6. Nothing.
///
/// Only releases in force count (started, not aborted or canceled), and only those whose
/// batch options (source versions, selection, static membership) match the device: a
/// release that does not match lets the next rule decide. Pacing (rollout stages, rate,
/// consent) never changes the decision, only when it is carried out.
public enum DesiredFirmwareResolver {
    public static func resolve(_ device: FleetDevice, releases: [FleetRelease], at now: Date) -> DesiredFirmware {
        if device.profile.isRevoked { return .none(.revoked) }
        if let lock = device.profile.lock {
            if let product = device.device.product, product != lock.firmware.product { return .none(.lockedToOtherProduct) }
            return .firmware(lock.firmware, release: lock.releaseID, reason: .locked(lock.delivery))
        }
        var deviceList: FleetRelease?
        var group: FleetRelease?
        var productDefault: FleetRelease?
        for release in releases where release.isInForce(at: now) && release.matches(device) {
            switch release.target {
            case .devices:
                if deviceList.map({ newer(release, than: $0) }) ?? true { deviceList = release }
            case .groups:
                if group.map({ higher(release, than: $0) }) ?? true { group = release }
            case .productDefault:
                if productDefault.map({ newer(release, than: $0) }) ?? true { productDefault = release }
            }
        }
        if let release = deviceList { return .firmware(release.firmware, release: release.id, reason: .deviceList) }
        if device.profile.isDevelopment { return .none(.development) }
        if let release = group, case .groups(let groups) = release.target,
            let via = groups.sorted().first(where: { device.profile.isMember(of: $0) })
        {
            return .firmware(release.firmware, release: release.id, reason: .group(via))
        }
        if let release = productDefault { return .firmware(release.firmware, release: release.id, reason: .productDefault) }
        return .none(device.device.product == nil ? .unknownProduct : .noRelease)
    }

    /// Newest first; ties (same instant) by higher firmware, then by id, so the answer never
    /// depends on the order releases were loaded in.
    static func newer(_ a: FleetRelease, than b: FleetRelease) -> Bool {
        if a.createdAt != b.createdAt { return a.createdAt > b.createdAt }
        if a.firmware.sequence != b.firmware.sequence { return a.firmware.sequence > b.firmware.sequence }
        return a.id > b.id
    }

    /// Highest firmware first; ties by the earliest release, then by id.
    static func higher(_ a: FleetRelease, than b: FleetRelease) -> Bool {
        if a.firmware.sequence != b.firmware.sequence { return a.firmware.sequence > b.firmware.sequence }
        if a.createdAt != b.createdAt { return a.createdAt < b.createdAt }
        return a.id < b.id
    }
}
