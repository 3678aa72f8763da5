import CoAP
import Foundation
import Logging
import Mosquitto
import ServiceLifecycle
import Synchronization
import UpdraftAdapter
import UpdraftCoAP
import UpdraftCore
import UpdraftHTTP
import UpdraftMQTT
import UpdraftStore
import UpdraftWire

/// The running gateway: one MQTT connection, the engine, the batched store writer and the
/// event feed. A `Service`; `updraft serve` runs it in a ServiceGroup after the broker.
public final class GatewayService: Service, Sendable {
    public let configuration: UpdraftConfiguration
    public let store: any StatusStore
    public let engine: UpdateEngine
    /// Delivers the engine's commands to the adapter of each device's transport.
    public let router: DeviceCommandRouter
    public let mqtt: MQTTGateway
    /// The event log on the events topic, at least once and in order (see ``MQTTEventFeed``).
    public let feed: MQTTEventFeed
    /// The CoAP device API; `nil` when `coap.enabled` is false.
    public let coap: CoAPGateway?
    /// Notified at each commit of events (the gateway's and, through the tail, other
    /// processes'): wakes the HTTP event streams and webhook deliveries.
    public let eventSignal = EventSignal()
    /// Signed HTTP download URLs for offers; `nil` when HTTP downloads are off.
    let links: DownloadLinks?
    /// HTTP downloads served and refused ("bytes.sent", "rejected.<code>").
    public let downloadCounters = GatewayCounters()
    /// What `/metrics` shows besides the counters: store flush durations, event publish
    /// lag, webhook attempts.
    public let instruments: GatewayInstruments
    let now: @Sendable () -> Date
    let logger: Logger
    private let flushInterval: Duration
    private let tailInterval: Duration
    private let ready = Atomic<Bool>(false)
    private let storeFailures = Mutex(FailureLog(interval: .seconds(10)))

    /// True once the engine has loaded and the gateway listens to devices.
    public var isReady: Bool { ready.load(ordering: .acquiring) }

    public init(
        configuration: UpdraftConfiguration, store: any StatusStore, loop: MosquittoEventLoop = .shared,
        logger: Logger, now: @escaping @Sendable () -> Date = { Date() }, dialect: (any WireDialect)? = nil
    ) throws {
        // nil: the configured prefix and size limit in today's protocol.
        let dialect = dialect ?? configuration.dialect
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.now = now
        links = try Self.downloadLinks(configuration, now: now)
        self.flushInterval = configuration.gateway.flushInterval
        self.tailInterval = configuration.gateway.tailInterval
        let c = configuration.mqtt
        let client = MosquittoClient(options: try configuration.gatewayClientOptions(), loop: loop, logger: logger)
        let images = CachedImages(cache: FirmwareImageCache(
            store: try FileImageStore(directory: configuration.imagesDirectory), capacityBytes: configuration.firmware.cacheBytes))
        // The engine first: adapters are made with it and register with the router.
        engine = UpdateEngine(
            store: store, logger: logger, now: now, planner: configuration.engine.planner,
            eventBudget: configuration.engine.eventBudget)
        router = DeviceCommandRouter(fallback: .mqtt, logger: logger)
        mqtt = MQTTGateway(
            client: client, dialect: dialect,
            limits: c.chunk, flow: c.flow, engine: engine, router: router, images: images, links: links, logger: logger)
        let instruments = GatewayInstruments()
        self.instruments = instruments
        feed = MQTTEventFeed(
            client: client, topic: dialect.eventsTopic, store: store, settings: c.events, logger: logger,
            published: { instruments.eventPublished(lag: $0) })
        coap =
            configuration.coap.enabled
            ? try Self.makeCoAP(configuration, engine: engine, router: router, images: images, links: links, logger: logger) : nil
    }

    private static func makeCoAP(
        _ configuration: UpdraftConfiguration, engine: UpdateEngine, router: DeviceCommandRouter,
        images: CachedImages, links: DownloadLinks?, logger: Logger
    ) throws -> CoAPGateway {
        let c = configuration.coap
        let keys = PSKFile(path: configuration.resolvedPSKFile)
        var settings = CoAPServer.Configuration(
            host: c.host, port: c.port == 0 ? nil : c.port, securePort: c.securePort == 0 ? nil : c.securePort,
            psk: c.securePort == 0 ? nil : CoAPServer.PSK(keyForIdentity: { keys.key(for: $0) }))
        settings.maxHandshakes = c.maxHandshakes
        settings.handshakeTimeout = .seconds(c.handshakeTimeout)
        if c.securePort != 0, !c.caFile.isEmpty {
            // The fleet CA's revoked certificates (`device revoke`) are refused at the handshake.
            let revoked = RevokedCertificates(pki: FleetPKI(configuration: configuration))
            settings.pki = CoAPServer.PKI(
                caFile: c.caFile, certificateFile: c.certificateFile, privateKeyFile: c.privateKeyFile,
                acceptsCertificate: { revoked.accepts(der: $0) })
        }
        let server = CoAPServer(configuration: settings, logger: logger)
        return try CoAPGateway(
            server: server,
            settings: .init(allowUnauthenticated: c.allowUnauthenticated, defaultLifetime: .seconds(c.defaultLifetime)),
            engine: engine, router: router, images: images, links: links, logger: logger)
    }

    public func run() async throws {
        // Cursor first, then load: a release made in between is seen twice (harmless), never missed.
        let cursor = try await store.lastEventSequence()
        try await engine.load()
        try await mqtt.client.connect()
        let broker = try configuration.gatewayClientOptions()
        logger.info("gateway connected", metadata: ["broker": "\(broker.host):\(broker.port)", "broker.tls": "\(broker.tls != nil)"])
        let parts = ServiceGroup(configuration: ServiceGroupConfiguration(services: parts(after: cursor), logger: logger))
        try await parts.run()
        // Every part has stopped: the device input first, then the store was flushed, then
        // the feed published what it could; the broker connection closes last.
        await mqtt.client.disconnect()
        ready.store(false, ordering: .releasing)
        logger.info("gateway stopped")
    }

    /// The gateway's long-running parts in dependency order: the group starts them in this
    /// order and, on graceful shutdown, stops them in reverse. The HTTP API stops first,
    /// then device input;
    /// the store is written after the last device message and operator change; the feed
    /// publishes the events of that last write (for at most 2 s; what it cannot publish in
    /// time waits in the store for the next start). One part ending ends the gateway.
    private func parts(after cursor: Int64) -> [ServiceGroupConfiguration.ServiceConfiguration] {
        var parts: [any Service] = [
            UntilShutdown(body: { try await self.feed.run() }, then: { await self.feed.finish(within: .seconds(2)) }),
            Beat(interval: flushInterval, state: (), step: { _ in
                // Fleet rules tick on this beat: after the batch of device and operator
                // events since the last one, and when a wakeup is due by the engine's
                // (injected) clock.
                self.router.deliver(await self.engine.tickIfDue().commands)
                await self.flushStore()
            }, final: { _ in await self.flushStore() }),
            Beat(interval: tailInterval, state: cursor, step: { await self.followOperatorChanges(after: $0) }),
        ]
        if let coap {
            parts.append(UntilShutdown(body: { await coap.watchPresence() }))
            parts.append(UntilShutdown(body: { try await Self.serve(coap) }))
        }
        parts.append(UntilShutdown(body: { try await self.mqtt.run(onSubscribed: { self.ready.store(true, ordering: .releasing) }) }))
        parts.append(UntilShutdown(body: { try await self.webhookDelivery().run() }))
        // Last: it starts once devices are served and stops first, finishing the requests
        // in flight while the store and the device input still run.
        if let http = httpServer() { parts.append(http) }
        return parts.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) }
    }

    private static func serve(_ coap: CoAPGateway) async throws {
        do {
            try await coap.server.run()
        } catch let error as CoAPError {
            throw UpdraftError(
                "coap_start_failed",
                "The CoAP endpoint could not start: \(error). Change coap.port / coap.secure_port, or set coap.enabled: false.")
        }
    }

    /// Writes the engine's pending changes to the store and hands the committed events to
    /// the feed. While the store cannot be written, says so once per interval, not on
    /// every retry.
    private func flushStore() async {
        let started = ContinuousClock.now
        do {
            let flushed = try await engine.flush()
            if flushed.wrote { instruments.storeFlushed(in: .now - started) }
            router.deliver(flushed.commands)
            feed.committed(flushed.events)
            if !flushed.events.isEmpty { eventSignal.notify() }
            if let failed = storeFailures.withLock({ $0.recovered() }) {
                logger.notice("store writable again", metadata: ["store.failed_writes": "\(failed)"])
            }
        } catch is CancellationError {
        } catch {
            instruments.storeFlushFailed()
            if let failed = storeFailures.withLock({ $0.failed(at: .now) }) {
                logger.error(
                    "store write failed; job transitions are refused (devices get unavailable) until it succeeds",
                    metadata: ["error": "\(error)", "store.failed_writes": "\(failed)"])
            }
        }
    }

    /// Hands operator changes (jobs created by the CLI, perhaps in another process) to the
    /// engine. Only their kinds are read; the cursor starts where the engine loaded.
    private func followOperatorChanges(after cursor: Int64) async -> Int64 {
        do {
            let last = try await store.lastEventSequence()
            guard last > cursor else { return cursor }
            eventSignal.notify()
            for event in try await store.events(after: cursor, through: last, kinds: Self.operatorKinds) {
                switch event.kind {
                case .jobCreated:
                    if let job = event.jobID { router.deliver(try await engine.jobCreated(job)) }
                case .releaseCreated:
                    if let release = event.releaseID { try await engine.fleetReleaseChanged(release) }
                case .fleetCommand, .deviceRevoked:
                    if let job = event.jobID { router.deliver(try await engine.jobCanceledByOperator(job)) }
                    if let release = event.releaseID { try await engine.fleetReleaseChanged(release) }
                    if let device = event.deviceID { router.deliver(try await engine.fleetProfileChanged(device)) }
                case .firmwareAdded, .firmwareDeleted:
                    try await engine.catalogChanged()
                default:
                    break
                }
            }
            return last
        } catch is CancellationError {
            return cursor
        } catch {
            // The whole range is read again: seeing a change twice is harmless, missing one is not.
            logger.error("reading operator changes failed; will retry", metadata: ["error": "\(error)"])
            return cursor
        }
    }

    static let operatorKinds: Set<EventKind> = [.jobCreated, .releaseCreated, .fleetCommand, .deviceRevoked, .firmwareAdded, .firmwareDeleted]
}

/// Counts failures of a repeated operation and says when to log: the first failure, then
/// at most once per interval while it keeps failing, and once when it recovers.
struct FailureLog {
    let interval: Duration
    private var failures = 0
    private var lastLogged: ContinuousClock.Instant?

    init(interval: Duration) { self.interval = interval }

    /// Returns the number of failures so far when this one should be logged.
    mutating func failed(at now: ContinuousClock.Instant) -> Int? {
        failures += 1
        if let last = lastLogged, now - last < interval { return nil }
        lastLogged = now
        return failures
    }

    /// Returns the number of failures when the operation had been failing.
    mutating func recovered() -> Int? {
        guard failures > 0 else { return nil }
        defer {
            failures = 0
            lastLogged = nil
        }
        return failures
    }
}

/// Adapters read images from the in-memory cache, by the catalog's SHA-256.
struct CachedImages: FirmwareImageSource {
    let cache: FirmwareImageCache
    func image(for firmware: Firmware) throws -> [UInt8] { try cache.image(sha256: firmware.sha256) }
}
