import CoreMetrics
import Prometheus
import Synchronization

/// What the gateway measures as it happens (unlike ``GatewayMetricsSnapshot``, read at each
/// scrape): store flush durations and failures, event publish lag, webhook delivery
/// attempts. Recorded through swift-metrics into the Prometheus registry that `/metrics`
/// emits; one per gateway (not the process-wide MetricsSystem: tests run several gateways
/// in one process). The gateway's parts get it, or a closure over it, from UpdraftApp.
public final class GatewayInstruments: Sendable {
    /// The metric names, as documented in README.md and the HTTP API article.
    public enum Name {
        public static let storeFlush = "updraft_store_flush_duration_seconds"
        public static let storeFlushFailures = "updraft_store_flush_failures_total"
        public static let publishLag = "updraft_event_publish_lag_seconds"
        public static let webhookFailures = "updraft_webhook_failures_total"
        public static let webhookDuration = "updraft_webhook_delivery_duration_seconds"
    }

    /// Webhooks with a series of their own at most; later ones are counted as `webhook="other"`.
    public static let webhookLabelLimit = 64

    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    private let webhookLabels = Mutex<Set<Int64>>([])

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // A flush is one SQLite transaction: sub-millisecond to a few seconds on a slow disk.
        let flush: [Duration] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5].map(Self.seconds)
        // Commit to broker acknowledgement (PUBACK): a round trip on a LAN, seconds when the broker lags.
        let lag: [Duration] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30].map(Self.seconds)
        // One webhook POST: up to webhooks.timeout.
        let webhook: [Duration] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30].map(Self.seconds)
        factory.durationHistogramBuckets = [Name.storeFlush: flush, Name.publishLag: lag, Name.webhookDuration: webhook]
        self.factory = factory
        // Shown at 0 before they first move.
        _ = Timer(label: Name.storeFlush, factory: factory)
        Counter(label: Name.storeFlushFailures, factory: factory).increment(by: 0)
        _ = Timer(label: Name.publishLag, dimensions: [("sink", "mqtt")], factory: factory)
    }

    /// One batched store write (the engine's flush) that committed, and how long it took.
    public func storeFlushed(in duration: Duration) {
        Timer(label: Name.storeFlush, factory: factory).recordNanoseconds(Self.nanoseconds(duration))
    }

    /// One batched store write that failed (it is retried at the next flush).
    public func storeFlushFailed() {
        Counter(label: Name.storeFlushFailures, factory: factory).increment()
    }

    /// An event reached `sink` (`mqtt`: the broker acknowledged its publish) `lag` after its commit.
    public func eventPublished(lag: Duration, sink: String = "mqtt") {
        Timer(label: Name.publishLag, dimensions: [("sink", sink)], factory: factory).recordNanoseconds(Self.nanoseconds(lag))
    }

    /// One POST to webhook `id`: its duration, and whether it failed (no 2xx answer).
    public func webhookAttempt(_ id: Int64, failed: Bool, duration: Duration) {
        let label = webhookLabel(id)
        let failures = Counter(label: Name.webhookFailures, dimensions: [("webhook", label)], factory: factory)
        failures.increment(by: failed ? 1 : 0)
        Timer(label: Name.webhookDuration, dimensions: [("webhook", label)], factory: factory)
            .recordNanoseconds(Self.nanoseconds(duration))
    }

    /// The webhook's id as a label, for the first ``webhookLabelLimit`` webhooks seen.
    private func webhookLabel(_ id: Int64) -> String {
        webhookLabels.withLock { seen in
            if seen.contains(id) { return "\(id)" }
            guard seen.count < Self.webhookLabelLimit else { return "other" }
            seen.insert(id)
            return "\(id)"
        }
    }

    static func seconds(_ value: Double) -> Duration { .nanoseconds(Int64(value * 1e9)) }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
