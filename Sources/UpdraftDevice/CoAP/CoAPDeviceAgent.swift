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
/// A reboot in the middle of a download loses the transfer; the device fetches the whole
/// image again after the announce, and the ETag proves it is the same image.
///
/// Many agents share one ``CoAPClient`` (one event loop thread); each has its own session.
public actor CoAPDeviceAgent: SimulatedDevice {
    public nonisolated let config: CoAPDeviceConfig
    private nonisolated let client: CoAPClient
    private let logger: Logger
    private let published: Mutex<DeviceState>

    private var version: FirmwareVersion
    private var installedSequence: Int64?
    private var storage: DeviceStorage?
    private var session: CoAPClientSession?
    /// Where the current boot's offers arrive (announce answer, notifications).
    private var inbox: AsyncStream<Input>.Continuation?
    /// The last job that ended here: notifications that still carry it are ignored.
    private var endedJob: JobID?
    /// Jobs whose download began on an earlier boot: fetching them again is a resume.
    private var startedDownloads: Set<JobID> = []
    private var stopRequested = false
    private var corruptionInjected = false
    private var rebootInjected = false

    /// The installed image when there is no storage directory (and `retainInstalledImage`).
    public private(set) var installedImage: [UInt8]?

    public nonisolated var id: DeviceID { config.id }
    public nonisolated var transport: Transport { .coap }

    public init(config: CoAPDeviceConfig, client: CoAPClient, logger: Logger) {
        var logger = logger
        logger[metadataKey: "device.id"] = "\(config.id)"
        self.config = config
        self.client = client
        self.logger = logger
        self.version = config.version
        self.installedSequence = config.installedSequence
        self.published = Mutex(DeviceState(version: config.version, installedSequence: config.installedSequence))
    }

    // MARK: Observable state (any thread)

    public nonisolated var state: DeviceState { published.withLock { $0 } }

    private func update(_ body: (inout DeviceState) -> Void) { published.withLock { body(&$0) } }

    private enum Input: Sendable {
        case offer([UInt8])
        /// The observation ended (session lost, gateway restarted): boot again.
        case observationLost
        case stop
    }

    private enum BootOutcome: Sendable {
        case stopped
        /// Could not reach the gateway, or lost it: wait and boot again.
        case retry
        /// Reboot; into a new version when one was installed.
        case reboot(Installed?)
    }

    private struct Installed: Sendable {
        var job: JobID
        var version: FirmwareVersion
        var sequence: Int64
    }

    // MARK: Running

    /// Boots, serves the device API, reboots into installed updates, and returns when the
    /// task is cancelled or ``stop()`` is called. Throws only when the storage directory
    /// cannot be created.
    public func run() async throws {
        if let directory = config.storageDirectory {
            let storage = try DeviceStorage(directory: directory)
            self.storage = storage
            if let installed = storage.installed() {
                version = installed.version
                installedSequence = installed.sequence
                update {
                    $0.version = installed.version
                    $0.installedSequence = installed.sequence
                }
            }
            if let download = storage.download() { startedDownloads.insert(download.job) }
        }
        defer { update { $0.online = false } }

        while !Task.isCancelled && !stopRequested {
            switch await boot() {
            case .stopped:
                return
            case .retry:
                do { try await Task.sleep(for: config.retryDelay) } catch { return }
            case .reboot(let installed):
                if installed != nil { update { $0.status = .rebooting } }
                logger.info("rebooting", metadata: ["device.version": "\(installed?.version ?? version)"])
                try? await Task.sleep(for: config.rebootDelay)
                if let installed {
                    version = installed.version
                    installedSequence = installed.sequence
                    update {
                        $0.version = installed.version
                        $0.installedSequence = installed.sequence
                        $0.job = nil
                    }
                }
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
        let security: CoAPClient.Security =
            config.psk.map { .psk(identity: config.id.rawValue, key: $0) } ?? .none
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
            if $0.status == .rebooting { $0.status = .updated(version) }
        }
        inbox.yield(.offer(answer))

        let path = "job/\(config.id.rawValue)"
        let query = identityQuery
        let logger = self.logger
        return await withTaskGroup(of: BootOutcome?.self) { group in
            group.addTask {
                do {
                    for try await notification in session.observe(path, query: query, accept: .json) {
                        if notification.code.isSuccess { inbox.yield(.offer(notification.payload)) }
                    }
                } catch {
                    logger.info("observation ended", metadata: ["error": "\(error)"])
                }
                inbox.yield(.observationLost)
                return nil
            }
            group.addTask { await self.serve(inputs, on: session) }
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

    private func serve(_ inputs: AsyncStream<Input>, on session: CoAPClientSession) async -> BootOutcome {
        for await input in inputs {
            if stopRequested || Task.isCancelled { return .stopped }
            switch input {
            case .stop: return .stopped
            case .observationLost: return .retry
            case .offer(let payload):
                if let outcome = await received(offer: payload, on: session) { return outcome }
            }
        }
        return .stopped
    }

    private var identityQuery: [String] { config.psk == nil ? ["d=\(config.id.rawValue)"] : [] }

    /// POSTs the announce; the answer's body is the pending job or `{}`. `nil` when the gateway did not answer 2.xx.
    private func announce(on session: CoAPClientSession) async -> [UInt8]? {
        let body = AnnounceBody(product: config.product, version: version, acceptsUpdates: config.acceptsUpdates)
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
            logger.debug("announced", metadata: ["device.version": "\(version)"])
            return response.payload
        } catch {
            logger.info("announce failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    // MARK: Jobs

    /// An offer (or `{}`) from the announce answer or a notification. Returns how the boot
    /// ends when it ends, `nil` to go on waiting for offers.
    private func received(offer payload: [UInt8], on session: CoAPClientSession) async -> BootOutcome? {
        guard let offer = try? JSONDecoder().decode(JobOffer.self, from: Data(payload)) else {
            if payload != Array("{}".utf8) { logger.warning("unreadable offer", metadata: ["coap.payload.bytes": "\(payload.count)"]) }
            return nil
        }
        if offer.job == endedJob { return nil }
        if offer.version == version {
            // The gateway missed our announce: say it again, that ends the job.
            _ = await announce(on: session)
            return nil
        }
        guard config.acceptsUpdates else { return nil }
        let check = OfferCheck(
            releaseKey: config.releaseKey, product: config.product, installedSequence: installedSequence,
            allowRollback: config.allowRollback, maxImageBytes: config.maxImageBytes)
        let manifest: Manifest
        do {
            manifest = try check.verify(offer)
        } catch {
            logger.warning(
                "offer rejected", metadata: ["job.id": "\(offer.job)", "error.code": "\(error.code)", "error.message": "\(error.message)"])
            await report(.failed(.rejected, detail: error.message), job: offer.job, on: session)
            endedJob = offer.job
            update { $0.status = .failed(.rejected) }
            return nil
        }
        guard let download = offer.download else {
            await end(offer.job, .rejected, detail: "the offer names no download resource", on: session)
            return nil
        }
        return await update(offer, manifest, from: download, on: session)
    }

    /// Downloads, verifies, installs; ends in a reboot, or `nil` when the job ended here.
    private func update(
        _ offer: JobOffer, _ manifest: Manifest, from path: String, on session: CoAPClientSession
    ) async -> BootOutcome? {
        let job = offer.job
        let etag = Self.etag(of: manifest)
        let resumed = startedDownloads.contains(job)
        startedDownloads.insert(job)
        try? storage?.recordDownload(.init(job: job, etag: etag))
        logger.info(
            resumed ? "fetching the image again after a reboot" : "update accepted",
            metadata: ["job.id": "\(job)", "firmware.version": "\(manifest.version)", "firmware.size": "\(manifest.size)",
                       "coap.block": "\(config.blockSize)"])
        update {
            $0.job = job
            $0.status = .downloading(percent: 0)
            if resumed { $0.resumes += 1 }
        }
        await report(.downloading(percent: 0), job: job, on: session)

        var failures = 0
        var verifyRetries = 0
        var image: [UInt8] = []
        while true {
            if stopRequested || Task.isCancelled { return .stopped }
            let response: CoAPClientResponse
            do {
                if let after = config.rebootDuringFirstDownloadAfter, !rebootInjected {
                    rebootInjected = true
                    do {
                        response = try await get(path, on: session, timeout: after)
                    } catch let error as CoAPError where error.code == .timeout {
                        logger.notice("fault injection: rebooting mid-download", metadata: ["job.id": "\(job)"])
                        return .reboot(nil)
                    }
                } else {
                    response = try await get(path, on: session, timeout: config.requestTimeout)
                }
            } catch {
                if stopRequested || error is CancellationError { return .stopped }
                failures += 1
                logger.info("download failed", metadata: ["job.id": "\(job)", "error": "\(error)", "attempt": "\(failures)"])
                if failures > config.maxRetries {
                    await end(job, .download, detail: "\(failures) downloads failed; last: \(error)", on: session)
                    return nil
                }
                try? await Task.sleep(for: config.retryDelay)
                continue
            }
            if response.code == .forbidden || response.code == .notFound {
                // The job ended on the gateway (canceled, replaced): nothing more to fetch.
                logger.info("job abandoned", metadata: ["job.id": "\(job)", "coap.code": "\(response.code)"])
                abandon(job)
                return nil
            }
            let problem: String? =
                if !response.code.isSuccess {
                    "the gateway answered \(response.code)"
                } else if let got = response.etagValue, got != etag {
                    "ETag \(String(got, radix: 16)) is not the manifest image's \(String(etag, radix: 16))"
                } else if response.payload.count != Int(manifest.size) {
                    "got \(response.payload.count) bytes, the manifest says \(manifest.size)"
                } else {
                    nil
                }
            if let problem {
                failures += 1
                logger.info("download refused", metadata: ["job.id": "\(job)", "problem": "\(problem)", "attempt": "\(failures)"])
                if failures > config.maxRetries {
                    await end(job, .download, detail: problem, on: session)
                    return nil
                }
                try? await Task.sleep(for: config.retryDelay)
                continue
            }
            image = response.payload
            if config.corruptFirstDownload && !corruptionInjected {
                corruptionInjected = true
                image[image.count / 2] ^= 0xFF
                logger.notice("fault injection: corrupted the image", metadata: ["job.id": "\(job)"])
            }
            let received = image.count
            update {
                $0.bytesReceived += received
                $0.status = .verifying
            }
            guard let digest = ImageInstaller.digestMismatch(image, manifest) else { break }
            guard verifyRetries < config.maxVerifyRetries else {
                await end(job, .verify, detail: "image sha256 \(digest) does not match the manifest's \(manifest.sha256)", on: session)
                return nil
            }
            verifyRetries += 1
            logger.warning("image digest mismatch; downloading again", metadata: ["job.id": "\(job)", "attempt": "\(verifyRetries)"])
            update {
                $0.verifyRetries += 1
                $0.status = .downloading(percent: 0)
            }
            await report(.downloading(percent: 0), job: job, on: session)
        }

        await report(.downloaded, job: job, on: session)
        await report(.verified, job: job, on: session)
        update { $0.status = .installing }
        await report(.installing, job: job, on: session)
        do {
            let installer = ImageInstaller(storage: storage, retainImage: config.retainInstalledImage)
            if let kept = try installer.install(image, manifest) { installedImage = kept }
        } catch {
            await end(job, .install, detail: "cannot write the image: \(error)", on: session)
            return nil
        }
        await report(.installed, job: job, on: session)
        logger.info("installed; rebooting", metadata: ["job.id": "\(job)", "firmware.version": "\(manifest.version)"])
        endedJob = job
        startedDownloads.remove(job)
        return .reboot(Installed(job: job, version: manifest.version, sequence: manifest.sequence))
    }

    private func get(_ path: String, on session: CoAPClientSession, timeout: Duration) async throws -> CoAPClientResponse {
        try await session.get(path, query: identityQuery, blockSize: config.blockSize, timeout: timeout)
    }

    /// The ETag the gateway gives an image: the first 8 bytes of its SHA-256, big-endian.
    static func etag(of manifest: Manifest) -> UInt64 {
        UInt64(manifest.sha256.prefix(16), radix: 16) ?? 0
    }

    private func abandon(_ job: JobID) {
        storage?.discardPartial()
        startedDownloads.remove(job)
        endedJob = job
        update {
            $0.job = nil
            $0.status = .idle
        }
    }

    /// The job failed here: report why and go back to waiting.
    private func end(_ job: JobID, _ reason: FailureReason, detail: String, on session: CoAPClientSession) async {
        logger.warning("update failed", metadata: ["job.id": "\(job)", "reason": "\(reason.rawValue)", "detail": "\(detail)"])
        await report(.failed(reason, detail: detail), job: job, on: session)
        abandon(job)
        update { $0.status = .failed(reason) }
    }

    /// POSTs a progress report and waits for the answer (CON), so reports arrive in order.
    private func report(_ report: DeviceReport, job: JobID, on session: CoAPClientSession) async {
        do {
            let response = try await session.post(
                "progress", payload: WireJSON.encode(ProgressBody(job: job, report: report)), contentFormat: .json,
                query: identityQuery, timeout: config.requestTimeout)
            if !response.code.isSuccess {
                logger.notice(
                    "gateway refused a report",
                    metadata: ["job.id": "\(job)", "coap.code": "\(response.code)",
                               "coap.payload": "\(String(decoding: response.payload.prefix(200), as: UTF8.self))"])
            }
        } catch {
            logger.info("report not delivered", metadata: ["job.id": "\(job)", "error": "\(error)"])
        }
    }
}
