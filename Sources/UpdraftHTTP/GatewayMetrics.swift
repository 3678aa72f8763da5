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
    /// The HTTP firmware downloads' cumulative counters (`bytes.sent`, `rejected.<code>`).
    public var downloads: [String: Int] = [:]
    /// Jobs in the store in each terminal state; `nil` when the store could not be read.
    public var finishedJobs: [JobState: Int]? = nil
    /// Webhooks disabled after failing; `nil` when the store could not be read.
    public var disabledWebhooks: Int? = nil

    public init(counters: [Transport: [String: Int]] = [:], devicesOnline: [Transport: Int] = [:], activeJobs: [JobState: Int] = [:]) {
        (self.counters, self.devicesOnline, self.activeJobs) = (counters, devicesOnline, activeJobs)
    }
}

/// `/metrics`: the snapshot through swift-metrics into the gateway's Prometheus registry
/// (``GatewayInstruments``, which also holds what is recorded as it happens).
/// Counters move by what the adapters counted since the last scrape, so they stay counters
/// (monotonic) for `rate()`; gauges are set.
final class GatewayMetrics: Sendable {
    private let instruments: GatewayInstruments
    private var factory: PrometheusMetricsFactory { instruments.factory }
    private let exported = Mutex<[String: Int]>([:])
    private let snapshot: @Sendable () async -> GatewayMetricsSnapshot

    /// Adapter counter keys and the metric each becomes (`rejected.<code>` is separate).
    static let counterNames: [String: String] = [
        "offers.sent": "updraft_offers_sent_total",
        "chunks.sent": "updraft_chunks_sent_total",
        "firmware": "updraft_coap_firmware_blocks_served_total",
        "received": "updraft_device_messages_total",
    ]
    /// Firmware bytes served, with a `protocol` label: MQTT chunks, CoAP blocks, HTTP downloads.
    static let bytesServed = "updraft_firmware_bytes_served_total"

    init(snapshot: @escaping @Sendable () async -> GatewayMetricsSnapshot, instruments: GatewayInstruments) {
        (self.snapshot, self.instruments) = (snapshot, instruments)
    }

    /// The Prometheus text exposition of the gateway now.
    func scrape() async -> String {
        let now = await snapshot()
        setGauges(now)
        for transport in Transport.allCases {
            // Made for every protocol so that each shows at 0 before it first moves.
            export("bytes.sent", now.counters[transport]?["bytes.sent"] ?? 0, source: transport.rawValue)
            for (key, value) in now.counters[transport] ?? [:] where key != "bytes.sent" { export(key, value, source: transport.rawValue) }
        }
        export("bytes.sent", now.downloads["bytes.sent"] ?? 0, source: "http")
        for (key, value) in now.downloads where key.hasPrefix("rejected.") { export(key, value, source: "http") }
        return instruments.registry.emitToString()
    }

    private func setGauges(_ now: GatewayMetricsSnapshot) {
        for transport in Transport.allCases {
            Meter(label: "updraft_devices_online", dimensions: [("transport", transport.rawValue)], factory: factory)
                .set(now.devicesOnline[transport] ?? 0)
        }
        for state in JobState.allCases where !state.isTerminal {
            Meter(label: "updraft_jobs_active", dimensions: [("state", state.rawValue)], factory: factory)
                .set(now.activeJobs[state] ?? 0)
        }
        if let finished = now.finishedJobs {
            for state in JobState.allCases where state.isTerminal {
                Meter(label: "updraft_jobs_finished", dimensions: [("state", state.rawValue)], factory: factory)
                    .set(finished[state] ?? 0)
            }
        }
        if let disabled = now.disabledWebhooks {
            Meter(label: "updraft_webhooks_disabled", factory: factory).set(disabled)
        }
    }

    /// Moves the counter of adapter key `key` of `source` (a transport, or `http`) to `value`.
    private func export(_ key: String, _ value: Int, source: String) {
        let label: String
        var dimensions = [("transport", source)]
        if key.hasPrefix("rejected.") {
            label = "updraft_refusals_total"
            dimensions.append(("code", String(key.dropFirst("rejected.".count))))
        } else if key == "bytes.sent" {
            label = Self.bytesServed
            dimensions = [("protocol", source)]
        } else if let name = Self.counterNames[key] {
            label = name
        } else {
            return
        }
        let delta = exported.withLock { seen -> Int in
            let id = "\(source)/\(key)"
            defer { seen[id] = max(seen[id] ?? 0, value) }
            return max(0, value - (seen[id] ?? 0))
        }
        // Made on every scrape so that a counter shows at 0 before it first moves.
        Counter(label: label, dimensions: dimensions, factory: factory).increment(by: delta)
    }
}
