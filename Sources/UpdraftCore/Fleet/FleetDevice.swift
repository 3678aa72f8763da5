import Foundation

/// A named set of devices of a product ("lab", "eu-west", "beta"). Releases can target
/// groups; a device may belong to several.
public struct GroupID: ValidatedIdentifier {
    public static let kind = "group"
    public static let maxLength = 64
    public let rawValue: String
    public init(unchecked: String) { rawValue = unchecked }
}

/// The firmware a release or lock points at, with the per-product sequence that orders it.
/// Carried by value so that fleet rules never need the catalog (or the manifest bytes).
public struct FirmwareRef: Sendable, Equatable, Hashable, Codable {
    public var product: ProductID
    public var version: FirmwareVersion
    /// The catalog's per-product sequence: "highest version" means highest sequence.
    public var sequence: Int64

    public init(product: ProductID, version: FirmwareVersion, sequence: Int64) {
        (self.product, self.version, self.sequence) = (product, version, sequence)
    }

    public init(_ firmware: Firmware) {
        self.init(product: firmware.product, version: firmware.version, sequence: firmware.sequence)
    }

    /// `product@version`, the catalog id (``Firmware/id``).
    public var id: FirmwareID { FirmwareID(product: product, version: version) }
}

/// When a lock takes effect (Particle's "flash now" and "flash on reset").
public enum LockDelivery: String, Sendable, Codable, CaseIterable {
    /// An online device is offered the firmware at once.
    case now
    /// The device is offered the firmware when it next connects (or announces).
    case nextSession
}

/// An operator pinned a device to one firmware. A lock wins over every release; unlocking
/// returns the device to the release rules.
public struct FirmwareLock: Sendable, Equatable, Codable {
    /// The ``FleetRelease`` of kind ``FleetReleaseKind/lock`` recorded for this lock: the
    /// lock's jobs carry its id, so they are listed and counted like any release's jobs,
    /// and the planner still recognises them after the lock is removed.
    public var releaseID: ReleaseID
    public var firmware: FirmwareRef
    public var delivery: LockDelivery
    public var lockedAt: Date

    public init(releaseID: ReleaseID, firmware: FirmwareRef, delivery: LockDelivery, lockedAt: Date) {
        (self.releaseID, self.firmware, self.delivery, self.lockedAt) = (releaseID, firmware, delivery, lockedAt)
    }
}

/// The fleet facts an operator sets on a device, kept apart from ``Device`` (which is what
/// the device says about itself) so the registry's stored shape does not change.
public struct DeviceFleetProfile: Sendable, Equatable, Codable {
    /// Sorted and without duplicates, so equal profiles compare and serialise equal.
    public private(set) var groups: [GroupID]
    /// Development devices never receive automatic (group or product default) updates.
    public var isDevelopment: Bool
    public var lock: FirmwareLock?
    /// When an operator revoked the device's credentials (`updraft device revoke`): it gets
    /// no job and the gateway refuses what it sends until it is provisioned again.
    public var revokedAt: Date?

    public init(groups: [GroupID] = [], isDevelopment: Bool = false, lock: FirmwareLock? = nil, revokedAt: Date? = nil) {
        self.groups = Array(Set(groups)).sorted()
        self.isDevelopment = isDevelopment
        self.lock = lock
        self.revokedAt = revokedAt
    }

    public var isRevoked: Bool { revokedAt != nil }

    public static let `default` = DeviceFleetProfile()

    public func isMember(of group: GroupID) -> Bool { groups.contains(group) }

    public mutating func add(to group: GroupID) {
        guard !groups.contains(group) else { return }
        groups.append(group)
        groups.sort()
    }

    public mutating func remove(from group: GroupID) { groups.removeAll { $0 == group } }

    /// Removes the lock; returns the one that was set, if any.
    @discardableResult
    public mutating func unlock() -> FirmwareLock? {
        defer { lock = nil }
        return lock
    }

    enum CodingKeys: String, CodingKey {
        case groups
        case isDevelopment = "development"
        case lock
        case revokedAt = "revoked_at"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            groups: try container.decodeIfPresent([GroupID].self, forKey: .groups) ?? [],
            isDevelopment: try container.decodeIfPresent(Bool.self, forKey: .isDevelopment) ?? false,
            lock: try container.decodeIfPresent(FirmwareLock.self, forKey: .lock),
            revokedAt: try container.decodeIfPresent(Date.self, forKey: .revokedAt))
    }
}

/// Everything the fleet rules need to know about one device at one moment: what it says
/// (``Device``), what the operator set (``DeviceFleetProfile``), and two facts the engine
/// tracks.
public struct FleetDevice: Sendable, Equatable {
    public var device: Device
    public var profile: DeviceFleetProfile
    /// The catalog sequence of the version the device runs, if that version is in the
    /// catalog: the downgrade guard needs it. `nil` never counts as a downgrade.
    public var versionSequence: Int64?
    /// When the device last announced itself (it does on every connect, and when it changes
    /// its mind about accepting updates). "Next session" and re-offers are measured from it.
    public var lastAnnouncedAt: Date?

    public init(device: Device, profile: DeviceFleetProfile = .default, versionSequence: Int64? = nil, lastAnnouncedAt: Date? = nil) {
        (self.device, self.profile, self.versionSequence) = (device, profile, versionSequence)
        self.lastAnnouncedAt = lastAnnouncedAt
    }

    public var id: DeviceID { device.id }
}
