import UpdraftSettings

/// The beats of ``GatewayService``. Keys under `gateway` in Config/updraft.yaml.
public struct GatewaySettings: Sendable {
    /// How often the engine's pending changes are written to the store (and the fleet
    /// rules tick): the batch a device's report waits for at most.
    public var flushInterval: Duration = .milliseconds(20)
    /// How often the store is read for changes other processes (the CLI) made.
    public var tailInterval: Duration = .milliseconds(50)

    public init() {}

    /// Reads the keys of the `gateway` scope.
    public init(reader: ConfigKeys) {
        let d = Self()
        flushInterval = reader.duration(forKey: "flush_interval_ms", default: d.flushInterval, unit: .milliseconds(1), in: 1...10_000)
        tailInterval = reader.duration(forKey: "tail_interval_ms", default: d.tailInterval, unit: .milliseconds(1), in: 1...60_000)
    }
}
