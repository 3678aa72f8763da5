public import UpdraftCore

/// What the HTTP API reads and changes, handed in by the composition root (UpdraftApp):
/// the status store for the /v1 reads, the running gateway's readiness and metrics, and
/// the operator's changes (``OperatorPort``).
public struct HTTPBackend: Sendable {
    public var store: any StatusStore
    public var readiness: @Sendable () async -> [ReadinessCheck]
    public var metrics: @Sendable () async -> GatewayMetricsSnapshot
    /// The changes (uploads, releases, rollout commands); `nil`: the API only reads
    /// (every change answers 503).
    public var operations: (any OperatorPort)?
    /// Woken by the gateway at each commit of events: the event streams read on at once.
    public var eventSignal: EventSignal
    /// How long an event stream stays silent before a keep-alive comment (`http.sse_keepalive`).
    public var eventsKeepAlive: Duration
    /// How often a waiting event stream re-reads the store when no commit woke it: the
    /// fallback for a missed wake-up, never the usual path.
    public var eventsRecheck: Duration = .seconds(1)
    /// Devices' firmware downloads by signed URL (`/v1/fw/...`); `nil` serves none.
    public var downloads: (any DeviceDownloads)? = nil
    /// What the gateway records as it happens (store flushes, publish lag, webhook
    /// attempts), emitted by `/metrics` with the snapshot.
    public var instruments = GatewayInstruments()

    public init(
        store: any StatusStore, readiness: @escaping @Sendable () async -> [ReadinessCheck],
        metrics: @escaping @Sendable () async -> GatewayMetricsSnapshot, operations: (any OperatorPort)? = nil,
        eventSignal: EventSignal = EventSignal(), eventsKeepAlive: Duration = HTTPSettings().sseKeepAlive
    ) {
        (self.store, self.readiness, self.metrics, self.operations) = (store, readiness, metrics, operations)
        (self.eventSignal, self.eventsKeepAlive) = (eventSignal, eventsKeepAlive)
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
