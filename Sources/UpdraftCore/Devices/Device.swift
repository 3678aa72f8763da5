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

    public init(
        id: DeviceID, product: ProductID? = nil, version: FirmwareVersion? = nil, acceptsUpdates: Bool = true,
        online: Bool = false, firstSeen: Date? = nil, lastSeen: Date? = nil, transport: Transport? = nil
    ) {
        self.id = id
        self.product = product
        self.version = version
        self.acceptsUpdates = acceptsUpdates
        self.online = online
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.transport = transport
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

    public init(product: ProductID, version: FirmwareVersion, acceptsUpdates: Bool = true) {
        self.product = product
        self.version = version
        self.acceptsUpdates = acceptsUpdates
    }
}
