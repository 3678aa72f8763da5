import Foundation

/// What the registry knows about a device.
public struct Device: Sendable, Equatable, Codable {
    public var id: DeviceID
    /// Unknown until the device first announces itself (a release may name it before).
    public var product: ProductID?
    public var version: FirmwareVersion?
    /// False while the device is busy and asks not to be updated; its job stays pending.
    public var acceptsUpdates: Bool
    public var online: Bool
    public var firstSeen: Date?
    public var lastSeen: Date?
    /// How the device last reached the gateway; job offers go out the same way.
    public var transport: Transport?
    /// The boot counter of the last announcement that carried one (see ``Announcement/boot``).
    public var boot: UInt64?

    public init(
        id: DeviceID, product: ProductID? = nil, version: FirmwareVersion? = nil, acceptsUpdates: Bool = true,
        online: Bool = false, firstSeen: Date? = nil, lastSeen: Date? = nil, transport: Transport? = nil,
        boot: UInt64? = nil
    ) {
        (self.id, self.product, self.version, self.acceptsUpdates) = (id, product, version, acceptsUpdates)
        (self.online, self.firstSeen, self.lastSeen, self.transport) = (online, firstSeen, lastSeen, transport)
        self.boot = boot
    }
}

/// The protocol a device speaks to the gateway. The engine is the same for all; only the
/// adapter that carries offers and chunks differs.
public enum Transport: String, Sendable, Codable, CaseIterable {
    case mqtt
    case coap
}

/// What a device says about itself each time it connects (and whenever it changes).
public struct Announcement: Sendable, Equatable {
    public var product: ProductID
    public var version: FirmwareVersion
    public var acceptsUpdates: Bool
    /// A number the device makes greater at every boot (a persisted counter, or a clock
    /// reading taken at boot); the same for every announcement of one boot. Optional: it
    /// lets the gateway tell an announcement made after a reboot from a replay of an
    /// older one.
    public var boot: UInt64?

    public init(product: ProductID, version: FirmwareVersion, acceptsUpdates: Bool = true, boot: UInt64? = nil) {
        (self.product, self.version, self.acceptsUpdates, self.boot) = (product, version, acceptsUpdates, boot)
    }

    /// How this announcement relates to what the gateway already heard from the device:
    /// only ``Recency/news`` may fail a job's install.
    ///
    /// - A boot counter decides when the device sent one before: a greater boot is a
    ///   reboot since then (news), the same boot is no reboot (current). A smaller one is
    ///   a copy older than what the gateway knows when `replayed` (a broker restored an
    ///   old retained message), and a device whose counter went back (a factory reset)
    ///   when live.
    /// - Without boot counters, a replay of a retained message is current and a live
    ///   message is news.
    ///
    /// - Parameters:
    ///   - knownBoot: the boot of the device's last announcement the gateway took.
    ///   - replayed: delivered because the gateway (re)subscribed, not because the device
    ///     published it now (the MQTT retain flag on delivery).
    public func recency(knownBoot: UInt64?, replayed: Bool) -> Recency {
        if let boot, let knownBoot {
            if boot > knownBoot { return .news }
            if boot == knownBoot { return .current }
            return replayed ? .outdated : .news
        }
        return replayed ? .current : .news
    }

    public enum Recency: Sendable, Equatable {
        /// Made after everything the gateway heard from the device: it judges jobs.
        case news
        /// The device's latest word, but no proof of a reboot (the same boot, or a replayed
        /// retained copy): it updates the registry and confirms a target version, and
        /// never fails an install.
        case current
        /// Older than what the gateway knows: ignored.
        case outdated
    }
}
