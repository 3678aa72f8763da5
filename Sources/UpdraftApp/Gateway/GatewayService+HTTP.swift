import Foundation
import Logging
import UpdraftCore
import UpdraftAdapter
import UpdraftHTTP
import UpdraftStore

/// The HTTP API's view of the running gateway: the store, readiness and metrics.
extension GatewayService {
    /// The API server, or `nil` when `http.port` is 0.
    func httpServer() -> HTTPServer? {
        guard configuration.http.enabled else { return nil }
        let operations = Operations(configuration: configuration, store: store, actor: ActorName("gateway"), logger: logger)
        var backend = HTTPBackend(
            store: store, readiness: { await self.readiness() }, metrics: { await self.metricsSnapshot() },
            operations: OperationsPort(operations), eventSignal: eventSignal, eventsKeepAlive: configuration.http.sseKeepAlive)
        backend.instruments = instruments
        if let links, let images = try? FileImageStore(directory: configuration.imagesDirectory) {
            backend.downloads = GatewayDownloads(
                engine: engine, store: store, signer: links.signer, images: images, counters: downloadCounters, now: now)
        }
        return HTTPServer(settings: configuration.http, backend: backend, logger: logger)
    }

    /// Posts the event log to the webhooks (`updraft webhook add`), woken by each commit.
    func webhookDelivery() -> WebhookDeliveryService {
        var service = WebhookDeliveryService(store: store, signal: eventSignal, settings: configuration.webhooks, logger: logger)
        service.instruments = instruments
        return service
    }

    /// The signer of download URLs and their base, when HTTP downloads are on.
    static func downloadLinks(_ configuration: UpdraftConfiguration, now: @escaping @Sendable () -> Date) throws -> DownloadLinks? {
        guard let base = configuration.http.downloadBaseURL else { return nil }
        let signer = try DownloadURLKey.load(dataDirectory: configuration.dataDirectory)
        return DownloadLinks(baseURL: base, signer: signer, lifetime: configuration.http.downloadURLLifetime, now: now)
    }

    /// The signed download URL of `device`'s active job, as its offer carries it; `nil`
    /// when HTTP downloads are off or the device has no active job.
    public func downloadURL(for device: DeviceID) async -> String? {
        guard let links, let job = await engine.activeJob(of: device), let firmware = await engine.firmware(for: job) else { return nil }
        return links.url(device: device, job: job.id, firmware: firmware)
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
        var snapshot = GatewayMetricsSnapshot(counters: counters, devicesOnline: online, activeJobs: await engine.activeJobStates)
        snapshot.downloads = downloadCounters.snapshot
        snapshot.finishedJobs = try? await store.jobCounts(states: JobState.allCases.filter(\.isTerminal))
        snapshot.disabledWebhooks = (try? await store.webhooks()).map { $0.filter(\.isDisabled).count }
        return snapshot
    }
}
