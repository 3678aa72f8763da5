import Logging
import UpdraftCore
import UpdraftHTTP

/// The HTTP API's view of the running gateway: the store, readiness and metrics.
extension GatewayService {
    /// The API server, or `nil` when `http.port` is 0.
    func httpServer() -> HTTPServer? {
        guard configuration.http.enabled else { return nil }
        let operations = Operations(configuration: configuration, store: store, actor: ActorName("gateway"), logger: logger)
        let backend = HTTPBackend(
            store: store, readiness: { await self.readiness() }, metrics: { await self.metricsSnapshot() },
            operations: OperationsPort(operations), eventSignal: eventSignal, eventsKeepAlive: configuration.http.sseKeepAlive)
        return HTTPServer(settings: configuration.http, backend: backend, logger: logger)
    }

    /// Posts the event log to the webhooks (`updraft webhook add`), woken by each commit.
    func webhookDelivery() -> WebhookDeliveryService {
        WebhookDeliveryService(store: store, signal: eventSignal, settings: configuration.webhooks, logger: logger)
    }

    /// `/readyz`: the engine loaded and subscribed, its last store write succeeded, the
    /// broker connection is up, and the CoAP endpoint (when enabled) runs.
    public func readiness() async -> [ReadinessCheck] {
        let writable = await engine.storeWritable
        var checks = [
            ReadinessCheck("gateway", ok: isReady, detail: isReady ? nil : "starting or stopping"),
            ReadinessCheck("store", ok: writable, detail: writable ? nil : "the last write failed; see the log"),
            ReadinessCheck(
                "broker", ok: mqtt.client.isConnected,
                detail: mqtt.client.isConnected
                    ? nil : "not connected to \(configuration.mqtt.broker.host):\(configuration.mqtt.broker.port)"),
        ]
        if let coap { checks.append(ReadinessCheck("coap", ok: coap.server.isRunning, detail: coap.server.isRunning ? nil : "not running")) }
        return checks
    }

    /// What `/metrics` shows: the adapters' counters and the engine's gauges.
    public func metricsSnapshot() async -> GatewayMetricsSnapshot {
        var counters: [Transport: [String: Int]] = [.mqtt: mqtt.counters.snapshot]
        if let coap { counters[.coap] = coap.counters.snapshot }
        var online: [Transport: Int] = [:]
        for transport in Transport.allCases { online[transport] = await engine.onlineDevices(via: transport).count }
        return GatewayMetricsSnapshot(counters: counters, devicesOnline: online, activeJobs: await engine.activeJobStates)
    }
}
