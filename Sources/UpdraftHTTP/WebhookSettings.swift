public import UpdraftCore
public import UpdraftSettings

/// Webhook delivery of `updraft serve`. Keys under `webhooks` in Config/updraft.yaml.
public struct WebhookSettings: Sendable {
    /// A webhook failing this long without one success is disabled (`webhook.disabled`).
    public var disableAfter: Duration = .seconds(24 * 3600)
    /// One request (connect, send, answer) longer than this is a failure.
    public var timeout: Duration = .seconds(10)
    /// The wait after the first failed attempt; it doubles per retry up to `backoffMax`.
    public var backoffInitial: Duration = .seconds(1)
    public var backoffMax: Duration = .seconds(300)
    /// Events per request at most (one request in flight per webhook).
    public var batchSize: Int = 100

    public init() {}

    public var backoff: WebhookBackoff { .init(base: backoffInitial, cap: backoffMax) }

    /// Reads the keys of the `webhooks` scope.
    public init(reader: ConfigKeys) {
        let d = Self()
        disableAfter = reader.duration(forKey: "disable_after", default: d.disableAfter, unit: .seconds(1), in: 1...(30 * 24 * 3600))
        timeout = reader.duration(forKey: "timeout_ms", default: d.timeout, unit: .milliseconds(1), in: 100...120_000)
        backoffInitial = reader.duration(forKey: "backoff_initial_ms", default: d.backoffInitial, unit: .milliseconds(1), in: 10...600_000)
        backoffMax = reader.duration(forKey: "backoff_max", default: d.backoffMax, unit: .seconds(1), in: 1...86_400)
        batchSize = reader.int(forKey: "batch_size", default: d.batchSize, in: 1...1000)
    }
}
