import CoAP
import Foundation
import Logging
import Synchronization
import UpdraftCore
import UpdraftWire

/// The reference device for the CoAP device API (see UpdraftCoAP's "CoAP device API").
///
/// On every boot it announces by POST (the answer holds the pending job, so a device that
/// was offline at release time gets its job at once), then Observes `job/<id>` so a job
/// released while it waits is pushed to it. It checks the offer exactly like the MQTT
/// device (``OfferCheck``), downloads the image with Block2 at its block size, checks the
/// ETag (the image hash's first 8 bytes) and the digest (``ImageInstaller``), reports
/// progress by POST, installs, reboots and announces the new version.
///
/// The image comes one Block2 block per request (a client with blocks transferred by the
/// caller), so the device knows which block it has: with a storage directory it keeps
/// the blocks in, and after a reboot asks from the first block it lacks; the ETag on every
/// block proves it is still the same image.
///
/// Many agents share one ``CoAPClient`` (one event loop thread); each has its own session.
public actor CoAPDeviceAgent: SimulatedDevice {
    public nonisolated let config: CoAPDeviceConfig
    private nonisolated let client: CoAPClient
    /// Blocks transferred by the caller: the firmware download, block by block.
    nonisolated let downloads: CoAPClient
    let logger: Logger
    private nonisolated let published: PublishedDeviceState
    /// Version, storage, boot counter, offer check and install: what the MQTT device does alike.
    var core: DeviceCore

    private var session: CoAPClientSession?
    /// Where the current boot's offers arrive (announce answer, notifications).
    private var inbox: AsyncStream<Input>.Continuation?
    /// Jobs whose download began on an earlier boot: fetching them again is a resume.
    var startedDownloads: Set<JobID> = []
    /// The signed HTTP download URL of the offer being worked on, when it has one.
    var offerURL: String?
    /// The last `downloading` percent reported over HTTP downloads.
    var httpReportedPercent = 0
    var stopRequested = false
    var corruptionInjected = false
    var rebootInjected = false

    /// The installed image when there is no storage directory (and `retainInstalledImage`).
    public var installedImage: [UInt8]? { core.installedImage }

    public nonisolated var id: DeviceID { config.id }
    public nonisolated var transport: Transport { .coap }

    /// - Parameters:
    ///   - client: announces, reports and the job observation (whole bodies).
    ///   - downloads: a client made with `blockTransfers: .byCaller`, for the image. Both
    ///     may be shared by many agents, and may share one event loop.
    public init(config: CoAPDeviceConfig, client: CoAPClient, downloads: CoAPClient, logger: Logger) {
        precondition(downloads.configuration.blockTransfers == .byCaller, "the download client must transfer blocks by the caller")
        let core = DeviceCore(config: config, logger: logger)
        self.config = config
        self.client = client
        self.downloads = downloads
        self.logger = core.logger
        self.published = core.published
        self.core = core
    }

    // MARK: Observable state (any thread)

    public nonisolated var state: DeviceState { published.value }

    func update(_ body: (inout DeviceState) -> Void) { published.update(body) }

    private enum Input: Sendable {
        case offer([UInt8])
        /// Time to announce again, within the lifetime.
        case reannounce
        /// The observation ended (session lost, gateway restarted): boot again.
        case observationLost
        case stop
    }

    enum BootOutcome: Sendable {
        case stopped
        /// Could not reach the gateway, or lost it: wait and boot again.
        case retry
        /// Reboot; into a new version when one was installed.
        case reboot(InstalledUpdate?)
    }

    // MARK: Running

    /// Boots, serves the device API, reboots into installed updates, and returns when the
    /// task is cancelled or ``stop()`` is called. Throws only when the storage directory
    /// cannot be created.
    public func run() async throws {
        try core.openStorage()
        if let download = core.storage?.download() { startedDownloads.insert(download.job) }
        defer { update { $0.online = false } }
        core.boot()

        while !Task.isCancelled && !stopRequested {
            switch await boot() {
            case .stopped:
                return
            case .retry:
                do { try await Task.sleep(for: config.retryDelay) } catch { return }
            case .reboot(let installed):
                if installed != nil { update { $0.status = .rebooting } }
                logger.info("rebooting", metadata: ["device.version": "\(installed?.version ?? core.version)"])
                try? await Task.sleep(for: config.rebootDelay)
                core.rebooted(into: installed)
            }
        }
    }

    /// Ends ``run()``: pending requests fail, the observation is cancelled.
    public func stop() async {
        stopRequested = true
        inbox?.yield(.stop)
        session?.close()
    }

    /// One boot: a session, an announce, an observation, and offers handled one at a time.
    private func boot() async -> BootOutcome {
        let session: CoAPClientSession
        do {
            session = try await client.session(host: config.host, port: config.port, security: security)
        } catch {
            logger.warning("cannot open a CoAP session; retrying", metadata: ["error": "\(error)"])
            return .retry
        }
        self.session = session
        defer {
            session.close()
            self.session = nil
            self.inbox = nil
            update { $0.online = false }
        }
        let (inputs, inbox) = AsyncStream.makeStream(of: Input.self, bufferingPolicy: .bufferingNewest(16))
        self.inbox = inbox
        if stopRequested { return .stopped }

        guard let answer = await announce(on: session) else { return stopRequested ? .stopped : .retry }
        update {
            $0.online = true
            $0.connections += 1
            if $0.status == .rebooting { $0.status = .updated(core.version) }
        }
        inbox.yield(.offer(answer))

        let (path, query) = ("job/\(config.id.rawValue)", identityQuery)
        return await withTaskGroup(of: BootOutcome?.self) { group in
            group.addTask { [logger] in
                await Self.observe(path, query: query, on: session, into: inbox, logger: logger)
                return nil
            }
            group.addTask { await self.serve(inputs, on: session) }
            if let lifetime = self.config.lifetime {
                group.addTask {
                    while true {
                        do { try await Task.sleep(for: lifetime / 2) } catch { return nil }
                        inbox.yield(.reannounce)
                    }
                }
            }
            var outcome = BootOutcome.stopped
            for await result in group {
                if let result {
                    outcome = result
                    break
                }
            }
            group.cancelAll()
            return outcome
        }
    }

    /// Hands the job notifications to the boot's inbox until the observation ends.
    private static func observe(
        _ path: String, query: [String], on session: CoAPClientSession, into inbox: AsyncStream<Input>.Continuation, logger: Logger
    ) async {
        do {
            for try await notification in session.observe(path, query: query, accept: .json) {
                if notification.code.isSuccess { inbox.yield(.offer(notification.payload)) }
            }
        } catch {
            logger.info("observation ended", metadata: ["error": "\(error)"])
        }
        inbox.yield(.observationLost)
    }

    private func serve(_ inputs: AsyncStream<Input>, on session: CoAPClientSession) async -> BootOutcome {
        for await input in inputs {
            if stopRequested || Task.isCancelled { return .stopped }
            switch input {
            case .stop: return .stopped
            case .observationLost: return .retry
            case .reannounce:
                guard let answer = await announce(on: session) else { continue }
                if let outcome = await received(offer: answer, on: session) { return outcome }
            case .offer(let payload):
                if let outcome = await received(offer: payload, on: session) { return outcome }
            }
        }
        return .stopped
    }

    var identityQuery: [String] { config.psk == nil ? ["d=\(config.id.rawValue)"] : [] }

    /// POSTs the announce; the answer's body is the pending job or `{}`. `nil` when the gateway did not answer 2.xx.
    func announce(on session: CoAPClientSession) async -> [UInt8]? {
        let body = core.announcement(lifetime: config.lifetime.map { max(1, Int(($0 / .seconds(1)).rounded(.up))) })
        do {
            let response = try await session.post(
                "announce", payload: WireJSON.encode(body), contentFormat: .json, query: identityQuery,
                timeout: config.requestTimeout)
            guard response.code.isSuccess else {
                logger.warning(
                    "announce refused",
                    metadata: ["coap.code": "\(response.code)", "coap.payload": "\(String(decoding: response.payload.prefix(200), as: UTF8.self))"])
                return nil
            }
            logger.debug("announced", metadata: ["device.version": "\(core.version)"])
            return response.payload
        } catch {
            logger.info("announce failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    var security: CoAPClient.Security { config.psk.map { .psk(identity: config.id.rawValue, key: $0) } ?? .none }
}
