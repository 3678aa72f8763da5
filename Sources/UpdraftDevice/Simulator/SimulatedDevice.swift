import UpdraftCore

/// A reference device the ``FleetSimulator`` runs, whatever protocol it speaks.
public protocol SimulatedDevice: Actor {
    nonisolated var id: DeviceID { get }
    nonisolated var transport: Transport { get }
    /// A consistent picture of the device, readable from any thread.
    nonisolated var state: DeviceState { get }
    /// The installed image, when kept in memory.
    var installedImage: [UInt8]? { get }
    /// Runs until cancelled or stopped.
    func run() async throws
    func stop() async
}

extension UpdraftDeviceAgent: SimulatedDevice {
    public nonisolated var id: DeviceID { config.id }
    public nonisolated var transport: Transport { .mqtt }
}
