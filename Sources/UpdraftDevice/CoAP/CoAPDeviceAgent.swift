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
    private nonisolated let downloads: CoAPClient
    private let logger: Logger
    private let published: Mutex<DeviceState>

    private var version: FirmwareVersion
    private var installedSequence: Int64?
    private var storage: DeviceStorage?
    /// This boot's number, sent in every announcement (see ``BootCounter``).
    private var bootNumber: UInt64?
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

    /// - Parameters:
    ///   - client: announces, reports and the job observation (whole bodies).
    ///   - downloads: a client made with `blockTransfers: .byCaller`, for the image. Both
    ///     may be shared by many agents, and may share one event loop.
    public init(config: CoAPDeviceConfig, client: CoAPClient, downloads: CoAPClient, logger: Logger) {
        precondition(downloads.configuration.blockTransfers == .byCaller, "the download client must transfer blocks by the caller")
        var logger = logger
        logger[metadataKey: "device.id"] = "\(config.id)"
        self.config = config
        self.client = client
        self.downloads = downloads
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
        /// Time to announce again, within the lifetime.
        case reannounce
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
        bootNumber = BootCounter.next(after: bootNumber, storage: storage)

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
                bootNumber = BootCounter.next(after: bootNumber, storage: storage)
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

    private var identityQuery: [String] { config.psk == nil ? ["d=\(config.id.rawValue)"] : [] }

    /// POSTs the announce; the answer's body is the pending job or `{}`. `nil` when the gateway did not answer 2.xx.
    private func announce(on session: CoAPClientSession) async -> [UInt8]? {
        let body = AnnounceBody(
            product: config.product, version: version, acceptsUpdates: config.acceptsUpdates,
            lifetime: config.lifetime.map { max(1, Int(($0 / .seconds(1)).rounded(.up))) },
            boot: config.announcesBoot ? bootNumber : nil)
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
            resumed ? "download begun before a reboot; going on" : "update accepted",
            metadata: ["job.id": "\(job)", "firmware.version": "\(manifest.version)", "firmware.size": "\(manifest.size)",
                       "coap.block": "\(config.blockSize)"])
        update {
            $0.job = job
            $0.status = .downloading(percent: 0)
            if resumed { $0.resumes += 1 }
        }
        await report(.downloading(percent: 0), job: job, on: session)

        var verifyRetries = 0
        var image: [UInt8]
        while true {
            switch await download(job, manifest, etag: etag, from: path, on: session) {
            case .ended(let outcome):
                return outcome
            case .image(let bytes):
                image = bytes
            }
            if config.corruptFirstDownload && !corruptionInjected {
                corruptionInjected = true
                image[image.count / 2] ^= 0xFF
                logger.notice("fault injection: corrupted the image", metadata: ["job.id": "\(job)"])
            }
            update { $0.status = .verifying }
            guard let digest = ImageInstaller.digestMismatch(image, manifest) else { break }
            guard verifyRetries < config.maxVerifyRetries else {
                await end(job, .verify, detail: "image sha256 \(digest) does not match the manifest's \(manifest.sha256)", on: session)
                return nil
            }
            verifyRetries += 1
            logger.warning("image digest mismatch; downloading again", metadata: ["job.id": "\(job)", "attempt": "\(verifyRetries)"])
            storage?.discardPartial()
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

    private enum DownloadOutcome {
        case image([UInt8])
        /// The download ended without an image; `update` returns this.
        case ended(BootOutcome?)
    }

    /// Fetches the image one Block2 block at a time from the first block not yet kept
    /// (the storage keeps the blocks in across reboots), checking every block's ETag and
    /// number; reports `downloading` progress as it goes.
    private func download(
        _ job: JobID, _ manifest: Manifest, etag: UInt64, from path: String, on session: CoAPClientSession
    ) async -> DownloadOutcome {
        let size = Int(manifest.size)
        var download = ImageDownload(job: job, size: size, chunkSize: config.blockSize)
        if let kept = storage?.partial(job: job, sha256: manifest.sha256, size: size) {
            download.restore(prefix: kept[...])
            if download.receivedBytes > 0 {
                logger.info("resuming the download", metadata: ["job.id": "\(job)", "download.offset": "\(download.firstMissingOffset)"])
            }
        }
        let blocks: CoAPClientSession
        do {
            blocks = try await downloads.session(host: config.host, port: config.port, security: security)
        } catch {
            logger.warning("cannot open a CoAP session for the download", metadata: ["error": "\(error)"])
            return .ended(.retry)
        }
        defer { blocks.close() }
        let started = ContinuousClock.now
        var reportedPercent = download.percent
        var reportedAt = started
        var savedBytes = download.contiguousBytes
        var failures = 0
        while !download.isComplete {
            if stopRequested || Task.isCancelled { return .ended(.stopped) }
            if let after = config.rebootDuringFirstDownloadAfter, !rebootInjected, ContinuousClock.now - started >= after {
                rebootInjected = true
                savePartial(download, manifest)
                logger.notice("fault injection: rebooting mid-download", metadata: ["job.id": "\(job)", "download.offset": "\(download.firstMissingOffset)"])
                return .ended(.reboot(nil))
            }
            let number = download.firstMissing
            let problem: String
            do {
                let response = try await blocks.getBlock(
                    path, number: number, size: download.chunkSize, query: identityQuery, timeout: config.requestTimeout)
                if response.code == .forbidden || response.code == .notFound {
                    // The job ended on the gateway (canceled, replaced): nothing more to fetch.
                    logger.info("job abandoned", metadata: ["job.id": "\(job)", "coap.code": "\(response.code)"])
                    abandon(job)
                    return .ended(nil)
                }
                if let block = response.block2, block.size < download.chunkSize {
                    // The server may choose smaller blocks (RFC 7959); go on in its size.
                    download.rechunk(to: block.size)
                    continue
                }
                switch check(response, block: number, of: download, etag: etag) {
                case .some(let why):
                    problem = why
                case nil:
                    _ = download.receive(offset: number * download.chunkSize, bytes: response.payload)
                    let received = response.payload.count
                    let percent = download.percent
                    update {
                        $0.bytesReceived += received
                        $0.status = .downloading(percent: percent)
                    }
                    failures = 0
                    if download.contiguousBytes - savedBytes >= max(size / 10, download.chunkSize) {
                        savePartial(download, manifest)
                        savedBytes = download.contiguousBytes
                    }
                    let now = ContinuousClock.now
                    if percent / 10 > reportedPercent / 10, now - reportedAt >= config.progressInterval, !download.isComplete {
                        reportedPercent = percent
                        reportedAt = now
                        await report(.downloading(percent: percent), job: job, on: session)
                    }
                    continue
                }
            } catch {
                if stopRequested || error is CancellationError { return .ended(.stopped) }
                problem = "\(error)"
            }
            failures += 1
            logger.info("block refused or lost", metadata: ["job.id": "\(job)", "coap.block": "\(number)", "problem": "\(problem)", "attempt": "\(failures)"])
            if failures > config.maxRetries {
                await end(job, .download, detail: "\(failures) block requests failed in a row; last: \(problem)", on: session)
                return .ended(nil)
            }
            try? await Task.sleep(for: config.retryDelay)
        }
        return .image(download.image)
    }

    /// Why `response` is not block `number` of the image, `nil` when it is.
    private func check(_ response: CoAPClientResponse, block number: Int, of download: ImageDownload, etag: UInt64) -> String? {
        let expected = min(download.chunkSize, download.size - number * download.chunkSize)
        if !response.code.isSuccess { return "the gateway answered \(response.code)" }
        if let got = response.etagValue, got != etag {
            return "ETag \(String(got, radix: 16)) is not the manifest image's \(String(etag, radix: 16))"
        }
        guard let block = response.block2 ?? (download.size <= download.chunkSize ? CoAPBlock(number: 0, more: false, size: download.chunkSize) : nil)
        else { return "no Block2 option in the answer" }
        if block.number != number || block.size != download.chunkSize {
            return "got block \(block.number) of \(block.size) bytes, asked for \(number) of \(download.chunkSize)"
        }
        if response.payload.count != expected { return "block \(number) has \(response.payload.count) bytes, expected \(expected)" }
        return nil
    }

    private func savePartial(_ download: ImageDownload, _ manifest: Manifest) {
        guard let storage else { return }
        do {
            try storage.savePartial(job: download.job, sha256: manifest.sha256, image: download.image, bytes: download.contiguousBytes)
        } catch {
            logger.warning("cannot save the partial download", metadata: ["error": "\(error)"])
        }
    }

    private var security: CoAPClient.Security { config.psk.map { .psk(identity: config.id.rawValue, key: $0) } ?? .none }

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
    /// 5.03 means the gateway could not save it: the same report is sent again.
    private func report(_ report: DeviceReport, job: JobID, on session: CoAPClientSession) async {
        do {
            var response = try await session.post(
                "progress", payload: WireJSON.encode(ProgressBody(job: job, report: report)), contentFormat: .json,
                query: identityQuery, timeout: config.requestTimeout)
            var attempts = 0
            while response.code == .serviceUnavailable, attempts < config.maxRetries, !stopRequested {
                attempts += 1
                try await Task.sleep(for: config.retryDelay * attempts)
                response = try await session.post(
                    "progress", payload: WireJSON.encode(ProgressBody(job: job, report: report)), contentFormat: .json,
                    query: identityQuery, timeout: config.requestTimeout)
            }
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
