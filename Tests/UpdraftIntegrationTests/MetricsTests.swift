import Foundation
import LoopbackPorts
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// `/metrics` of a real gateway scraped before and after a small release that MQTT, CoAP
/// and HTTP-download devices take: every documented metric present with its `# TYPE`,
/// counters monotonic, histogram buckets cumulative; and its hostile twin, a webhook
/// receiver that fails every attempt until the webhook is disabled.
@Suite(.timeLimit(.minutes(4))) struct MetricsTests {
    /// A parsed Prometheus text exposition.
    struct Exposition {
        var types: [String: String] = [:]
        /// `name{labels}` to value.
        var samples: [String: Double] = [:]

        init(_ text: String) {
            for line in text.split(separator: "\n") {
                if line.hasPrefix("# TYPE ") {
                    let parts = line.split(separator: " ")
                    if parts.count == 4 { types[String(parts[2])] = String(parts[3]) }
                } else if !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) {
                    samples[String(line[..<space])] = value
                }
            }
        }

        /// The samples of metric `name` (its own lines, not a histogram's `_bucket` lines).
        func series(_ name: String) -> [String: Double] {
            samples.filter { $0.key == name || $0.key.hasPrefix(name + "{") }
        }

        func value(_ name: String, _ labels: String = "") -> Double? { samples[labels.isEmpty ? name : "\(name){\(labels)}"] }

        /// The `le` buckets of histogram `name` (no other labels), in bound order, and its count.
        func histogram(_ name: String, _ labels: String = "") -> (buckets: [(Double, Double)], count: Double?) {
            let prefix = name + "_bucket{" + (labels.isEmpty ? "" : labels + ",") + "le=\""
            let buckets = samples.compactMap { key, value -> (Double, Double)? in
                guard key.hasPrefix(prefix) else { return nil }
                let bound = key.dropFirst(prefix.count).dropLast(2)
                return (bound == "+Inf" ? .infinity : Double(bound) ?? .nan, value)
            }
            return (buckets.sorted { $0.0 < $1.0 }, value(name + "_count", labels))
        }
    }

    static let types: [String: String] = [
        "updraft_devices_online": "gauge", "updraft_jobs_active": "gauge", "updraft_jobs_finished": "gauge",
        "updraft_webhooks_disabled": "gauge", "updraft_offers_sent_total": "counter", "updraft_chunks_sent_total": "counter",
        "updraft_firmware_bytes_served_total": "counter", "updraft_coap_firmware_blocks_served_total": "counter",
        "updraft_device_messages_total": "counter", "updraft_store_flush_failures_total": "counter",
        "updraft_store_flush_duration_seconds": "histogram", "updraft_event_publish_lag_seconds": "histogram",
    ]

    static func scrape(_ client: HTTPTestClient, _ token: String) async throws -> Exposition {
        let response = try await client.get("/metrics", token: token)
        #expect(response.status == 200)
        #expect(response.header("content-type")?.hasPrefix("text/plain") == true)
        return Exposition(response.text)
    }

    @Test func aReleaseOverMQTTCoAPAndHTTPShowsInEveryMetric() async throws {
        try await HTTPGatewayTests.withAPI { h, client, token in
            let before = try await Self.scrape(client, token)
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 40_000)
            let native = try await h.fleet(2, prefix: "n-") { ($0.protocol, $0.coapPort) = (.mixed, h.stack.configuration.coap.port) }
            let overHTTP = try await h.fleet(1, prefix: "w-") { $0.downloadsOverHTTP = true }
            native.start()
            overHTTP.start()
            try await h.waitUntilRegistered(3)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
            try await h.waitForAllSucceeded(plan.release.id)
            try await native.waitForAll(version: firmware.version, timeout: .seconds(30))
            try await overHTTP.waitForAll(version: firmware.version, timeout: .seconds(30))
            await native.stop()
            await overHTTP.stop()
            let last = try await h.ops.store.lastEventSequence()
            try await eventually(timeout: .seconds(20), "the feed published every event") { (h.stack.gateway?.feed.acknowledged ?? 0) >= last }
            let after = try await Self.scrape(client, token)

            for (name, type) in Self.types { #expect(after.types[name] == type, "\(name): \(after.types[name] ?? "missing")") }
            // Counters never go back.
            for (key, old) in before.samples where before.types[String(key.prefix { $0 != "{" })] == "counter" {
                #expect((after.samples[key] ?? -1) >= old, "\(key) went from \(old) to \(after.samples[key] ?? -1)")
            }
            for proto in ["mqtt", "coap", "http"] {
                let served = after.value("updraft_firmware_bytes_served_total", "protocol=\"\(proto)\"") ?? 0
                #expect(served >= Double(image.count), "\(proto) served \(served) bytes")
            }
            #expect(after.value("updraft_coap_firmware_blocks_served_total", "transport=\"coap\"") ?? 0 >= 1)
            #expect(after.value("updraft_jobs_finished", "state=\"succeeded\"") == 3)
            #expect(after.value("updraft_jobs_finished", "state=\"failed\"") == 0)
            #expect(after.value("updraft_jobs_active", "state=\"queued\"") == 0)
            #expect(after.value("updraft_store_flush_failures_total") == 0)
            for (name, labels) in [("updraft_store_flush_duration_seconds", ""), ("updraft_event_publish_lag_seconds", "sink=\"mqtt\"")] {
                try Self.expectCumulative(after, name, labels)
                let (_, count) = after.histogram(name, labels)
                let (_, earlier) = before.histogram(name, labels)
                #expect((count ?? 0) > (earlier ?? 0), "\(name) did not move")
            }
            // Every event of the release the gateway committed (all but release.created and the
            // job.created ones, which the test's Operations wrote) was timed once, at most.
            let lag = after.histogram("updraft_event_publish_lag_seconds", "sink=\"mqtt\"").count ?? 0
            #expect(lag <= Double(last))
        }
    }

    static func expectCumulative(_ exposition: Exposition, _ name: String, _ labels: String) throws {
        let (buckets, count) = exposition.histogram(name, labels)
        #expect(buckets.count >= 10, "\(name): \(buckets)")
        for (lower, upper) in zip(buckets, buckets.dropFirst()) {
            #expect(lower.1 <= upper.1, "\(name) bucket le=\(upper.0) (\(upper.1)) below le=\(lower.0) (\(lower.1))")
        }
        #expect(buckets.last?.0 == .infinity)
        #expect(buckets.last?.1 == count, "\(name): +Inf bucket \(buckets.last?.1 ?? -1), _count \(count ?? -1)")
        #expect(exposition.value(name + "_sum", labels) != nil)
    }

    /// A receiver that answers 500 to everything: the webhook's failures counter rises with
    /// each attempt, the attempts' durations are timed, and once disabled the gauge says so.
    @Test func aFailingWebhookCountsFailuresUntilDisabled() async throws {
        let receiver = WebhookReceiver { _ in .internalServerError }
        try await receiver.start()
        let port = PortProbe.freePort()
        try await Harness.with(tune: { config in
            config.http.port = port
            config.webhooks.backoffInitial = .milliseconds(20)
            config.webhooks.backoffMax = .seconds(1)
            config.webhooks.disableAfter = .seconds(2)
        }) { h in
            let token = try await h.ops.createToken(name: "probe", scope: "read").secret.value
            let client = HTTPTestClient(port: port)
            do {
                try await Self.failingWebhook(h, client, token, receiver)
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        }
        await receiver.stop()
    }

    static func failingWebhook(_ h: Harness, _ client: HTTPTestClient, _ token: String, _ receiver: WebhookReceiver) async throws {
        let quiet = try await Self.scrape(client, token)
        #expect(quiet.value("updraft_webhooks_disabled") == 0)
        #expect(quiet.series("updraft_webhook_failures_total").isEmpty)
        let hook = try await h.ops.addWebhook(url: receiver.url, secret: "metrics-webhook-secret", kinds: nil, after: 0)
        _ = try await h.addFirmware(version: "2.0", size: 1024)
        let failures = "webhook=\"\(hook.id)\""
        try await eventually(timeout: .seconds(30), "two failed attempts counted") {
            (try await Self.scrape(client, token).value("updraft_webhook_failures_total", failures) ?? 0) >= 2
        }
        try await eventually(timeout: .seconds(30), "the webhook disabled") {
            try await Self.scrape(client, token).value("updraft_webhooks_disabled") == 1
        }
        let end = try await Self.scrape(client, token)
        #expect(end.types["updraft_webhook_failures_total"] == "counter")
        #expect(end.types["updraft_webhook_delivery_duration_seconds"] == "histogram")
        let counted = end.value("updraft_webhook_failures_total", failures) ?? 0
        #expect(counted == Double(receiver.received.count), "\(counted) failures counted, \(receiver.received.count) requests received")
        try Self.expectCumulative(end, "updraft_webhook_delivery_duration_seconds", failures)
    }
}
