import Foundation
import Logging
import Mosquitto
import Synchronization
import UpdraftCore
import UpdraftWire

/// The reference device: speaks the MQTT device protocol from the device's side.
///
/// It announces itself on every connection, verifies offers against the release key,
/// downloads the image in windows of chunks (resuming from the first missing chunk after
/// a lost chunk, a dropped connection, a restarted gateway or a restarted process),
/// checks the digest, installs, reboots and announces the new version. The logic is
/// deliberately plain (one event handler per topic plus a periodic `tick`) so that it
/// ports to a C main loop.
///
/// ```swift
/// let agent = UpdraftDeviceAgent(config: config, logger: logger)
/// try await agent.run()   // until the task is cancelled or `stop()` is called
/// ```
public actor UpdraftDeviceAgent {
    public nonisolated let config: DeviceConfig
    private nonisolated let loop: MosquittoEventLoop
    let logger: Logger
    let dialect: any WireDialect
    private nonisolated let published: PublishedDeviceState
    /// Version, storage, boot counter, offer check and install: what the CoAP device does alike.
    var core: DeviceCore

    /// The client of the current boot; a reboot makes a new one.
    var client: MosquittoClient?
    private var subscribed = false
    var connected = false
    /// Counts connections, so a window asked for before a reconnect is asked again after it.
    var epoch = 0
    var job: ActiveJob?
    var pendingReboot: InstalledUpdate?
    /// The reports of the last job, in the order sent: sent again after `unavailable`.
    var sentReports: (job: JobID, reports: [DeviceReport])?
    /// The gateway could not save what we sent (`unavailable`): what to send again, when.
    var unavailableRetry: UnavailableRetry?
    private var stopRequested = false
    var corruptionInjected = false
    var dropInjected = false
    /// The HTTP download in flight (`downloadsOverHTTP`), at most one.
    var fetchTask: Task<Void, Never>?

    /// The installed image when there is no storage directory (and `retainInstalledImage`).
    public var installedImage: [UInt8]? { core.installedImage }

    public init(config: DeviceConfig, loop: MosquittoEventLoop = .shared, logger: Logger) {
        let core = DeviceCore(config: config, logger: logger)
        self.config = config
        self.loop = loop
        self.logger = core.logger
        self.dialect = config.dialect
        self.published = core.published
        self.core = core
    }

    // MARK: Observable state (any thread)

    public nonisolated var state: DeviceState { published.value }
    public nonisolated var status: DeviceStatus { state.status }
    public nonisolated var installedVersion: FirmwareVersion { state.version }
    public nonisolated var bytesReceived: Int { state.bytesReceived }
    public nonisolated var resumes: Int { state.resumes }

    func update(_ body: (inout DeviceState) -> Void) { published.update(body) }

    // MARK: Running

    /// Connects, serves the device protocol, reboots into installed updates, and returns
    /// when the task is cancelled or ``stop()`` is called. Throws only when the storage
    /// directory cannot be created.
    public func run() async throws {
        try core.openStorage()
        defer { update { $0.online = false } }
        core.boot()

        while !Task.isCancelled && !stopRequested {
            let client = makeClient()
            self.client = client
            subscribed = false
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await event in client.connectionEvents { await self.connectionChanged(event, on: client) }
                }
                group.addTask { await self.tickLoop() }
                if await connect(client) {
                    for await message in client.messages {
                        handle(message)
                        if pendingReboot != nil || stopRequested { break }
                    }
                }
                group.cancelAll()
            }
            connected = false
            update { $0.online = false }
            if stopRequested { break }
            if let installed = pendingReboot {
                await reboot(client, into: installed)
            } else {
                // Cancelled: leave like a device switched off properly.
                await goOffline(client)
            }
        }
    }

    /// Says `offline`, disconnects, and makes ``run()`` return.
    public func stop() async {
        stopRequested = true
        if let client { await goOffline(client) }
    }

    private func makeClient() -> MosquittoClient {
        var options = MosquittoOptions(clientID: config.id.rawValue, host: config.brokerHost, port: config.brokerPort)
        options.username = config.id.rawValue
        options.password = config.password
        options.tls = config.tls
        options.reconnect = config.reconnect
        options.will = .init(
            topic: dialect.topic(.presence, of: config.id), payload: Presence.offline, qos: .atLeastOnce, retain: true)
        return MosquittoClient(options: options, loop: loop, logger: logger)
    }

    /// Tries until connected; `false` when cancelled or stopped first.
    private func connect(_ client: MosquittoClient) async -> Bool {
        var delay = config.reconnect.initialDelay
        while !Task.isCancelled && !stopRequested {
            do {
                try await client.connect()
                return true
            } catch is CancellationError {
                return false
            } catch {
                logger.warning("cannot connect; retrying", metadata: ["error": "\(error)", "retry.in": "\(delay)"])
                do { try await Task.sleep(for: delay) } catch { return false }
                delay = min(delay * 2, max(config.reconnect.maxDelay, config.reconnect.initialDelay))
            }
        }
        return false
    }

    /// Runs on the first connection and after every reconnect (the client re-subscribes
    /// by itself before it reports `.connected`).
    private func connectionChanged(_ event: ConnectionEvent, on client: MosquittoClient) async {
        guard client === self.client else { return }
        switch event {
        case .connected:
            if !subscribed {
                do {
                    for filter in dialect.deviceSubscriptions(of: config.id) {
                        try await client.subscribe(filter, qos: .atLeastOnce)
                    }
                    subscribed = true
                } catch {
                    // The connection went while subscribing; the next `.connected` tries again.
                    logger.warning("subscribe failed", metadata: ["error": "\(error)"])
                    return
                }
            }
            epoch += 1
            connected = true
            client.publishNoWait(
                topic: dialect.topic(.presence, of: config.id), payload: Presence.online, qos: .atLeastOnce, retain: true)
            announce()
            update {
                $0.online = true
                $0.connections += 1
                if $0.status == .rebooting { $0.status = .updated(core.version) }
            }
            logger.debug("online", metadata: ["device.version": "\(core.version)", "mqtt.connection": "\(epoch)"])
        case .disconnected(let error):
            connected = false
            update { $0.online = false }
            if let error { logger.info("connection lost", metadata: ["error": "\(error)"]) }
        }
    }

    func announce() {
        client?.publishNoWait(
            topic: dialect.topic(.announce, of: config.id), payload: dialect.encode(core.announcement()), qos: .atLeastOnce,
            retain: true)
    }

    private func goOffline(_ client: MosquittoClient) async {
        if client.isConnected {
            client.publishNoWait(
                topic: dialect.topic(.presence, of: config.id), payload: Presence.offline, qos: .atLeastOnce, retain: true)
        }
        await client.disconnect()
        connected = false
        update { $0.online = false }
    }

    /// Reports `installed` (waiting for the broker's ack, so it is not lost in the
    /// disconnect), goes offline, waits, and comes back as the new version.
    private func reboot(_ client: MosquittoClient, into installed: InstalledUpdate) async {
        do {
            try await client.publish(
                topic: dialect.topic(.progress, of: config.id),
                payload: dialect.encode(ProgressBody(job: installed.job, report: .installed)), qos: .atLeastOnce)
        } catch {
            logger.warning("installed report not acknowledged", metadata: ["job.id": "\(installed.job)", "error": "\(error)"])
        }
        await goOffline(client)
        logger.info("rebooting", metadata: ["device.version": "\(installed.version)"])
        try? await Task.sleep(for: config.rebootDelay)
        core.rebooted(into: installed)
        pendingReboot = nil
    }

    private nonisolated func tickLoop() async {
        let interval = max(min(config.requestTimeout / 4, .seconds(1)), .milliseconds(10))
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            await tick(now: .now)
        }
    }
}
