public import UpdraftCore

/// What the HTTP API reads, handed in by the composition root (UpdraftApp): the status
/// store for the /v1 reads, and the running gateway's readiness and metrics.
public struct HTTPBackend: Sendable {
    public var store: any StatusStore
    public var readiness: @Sendable () async -> [ReadinessCheck]
    public var metrics: @Sendable () async -> GatewayMetricsSnapshot
    /// Devices' firmware downloads by signed URL (`/v1/fw/...`); `nil` serves none.
    public var downloads: (any DeviceDownloads)? = nil

    public init(
        store: any StatusStore, readiness: @escaping @Sendable () async -> [ReadinessCheck],
        metrics: @escaping @Sendable () async -> GatewayMetricsSnapshot
    ) {
        (self.store, self.readiness, self.metrics) = (store, readiness, metrics)
    }
}

/// One part of `/readyz`: ready when every check is.
public struct ReadinessCheck: Sendable, Equatable {
    public var name: String
    public var ok: Bool
    public var detail: String?

    public init(_ name: String, ok: Bool, detail: String? = nil) {
        (self.name, self.ok, self.detail) = (name, ok, detail)
    }
}
