import CoreMetrics
import Prometheus
import Synchronization
public import UpdraftCore

/// What the gateway counts and holds, read at each scrape: the adapters' counters
/// (cumulative) and the engine's gauges. ``UpdraftApp`` fills it from the running gateway.
public struct GatewayMetricsSnapshot: Sendable {
    /// Each adapter's cumulative counters (`offers.sent`, `rejected.<code>`, `bytes.sent`, ...), by transport.
    public var counters: [Transport: [String: Int]]
    /// Devices online, by the transport they last spoke over.
    public var devicesOnline: [Transport: Int]
    /// Active (not yet terminal) jobs, by state.
    public var activeJobs: [JobState: Int]

    public init(counters: [Transport: [String: Int]] = [:], devicesOnline: [Transport: Int] = [:], activeJobs: [JobState: Int] = [:]) {
        (self.counters, self.devicesOnline, self.activeJobs) = (counters, devicesOnline, activeJobs)
    }
}

/// `/metrics`: the snapshot through swift-metrics into a Prometheus registry of this server
/// (not the process-wide MetricsSystem: tests run several gateways in one process).
/// Counters move by what the adapters counted since the last scrape, so they stay counters
/// (monotonic) for `rate()`; gauges are set.
final class GatewayMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let exported = Mutex<[String: Int]>([:])
    private let snapshot: @Sendable () async -> GatewayMetricsSnapshot

    /// Adapter counter keys and the metric each becomes (`rejected.<code>` is separate).
    static let counterNames: [String: String] = [
        "offers.sent": "updraft_offers_sent_total",
        "chunks.sent": "updraft_chunks_sent_total",
        "bytes.sent": "updraft_chunk_bytes_sent_total",
        "firmware": "updraft_coap_firmware_blocks_served_total",
        "received": "updraft_device_messages_total",
    ]

    init(snapshot: @escaping @Sendable () async -> GatewayMetricsSnapshot) {
        self.snapshot = snapshot
        factory = PrometheusMetricsFactory(registry: registry)
    }

    /// The Prometheus text exposition of the gateway now.
    func scrape() async -> String {
        let now = await snapshot()
        for transport in Transport.allCases {
            Meter(label: "updraft_devices_online", dimensions: [("transport", transport.rawValue)], factory: factory)
                .set(now.devicesOnline[transport] ?? 0)
        }
        for state in JobState.allCases where !state.isTerminal {
            Meter(label: "updraft_jobs_active", dimensions: [("state", state.rawValue)], factory: factory)
                .set(now.activeJobs[state] ?? 0)
        }
        for (transport, counters) in now.counters {
            for (key, value) in counters { export(key, value, transport: transport) }
        }
        return registry.emitToString()
    }

    private func export(_ key: String, _ value: Int, transport: Transport) {
        let label: String
        var dimensions = [("transport", transport.rawValue)]
        if key.hasPrefix("rejected.") {
            label = "updraft_refusals_total"
            dimensions.append(("code", String(key.dropFirst("rejected.".count))))
        } else if let name = Self.counterNames[key] {
            label = name
        } else {
            return
        }
        let delta = exported.withLock { seen -> Int in
            let id = "\(transport.rawValue)/\(key)"
            defer { seen[id] = max(seen[id] ?? 0, value) }
            return max(0, value - (seen[id] ?? 0))
        }
        // Made on every scrape so that a counter shows at 0 before it first moves.
        Counter(label: label, dimensions: dimensions, factory: factory).increment(by: delta)
    }
}
