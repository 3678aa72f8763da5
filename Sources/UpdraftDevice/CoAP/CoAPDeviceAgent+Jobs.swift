import CoAP
import Foundation
import Logging
import UpdraftCore
import UpdraftWire

// Jobs on the CoAP device's actor: the offer check, the Block2 download, the install and
// the reports.
extension CoAPDeviceAgent {
    // MARK: Jobs

    /// An offer (or `{}`) from the announce answer or a notification. Returns how the boot
    /// ends when it ends, `nil` to go on waiting for offers.
    func received(offer payload: [UInt8], on session: CoAPClientSession) async -> BootOutcome? {
        guard let offer = try? JSONDecoder().decode(JobOffer.self, from: Data(payload)) else {
            if payload != Array("{}".utf8) {
                core.ignored(offer: nil, UpdraftError("malformed_offer", "The offer (\(payload.count) bytes) is not a job offer."))
            }
            return nil
        }
        if offer.job == core.endedJob { return nil }
        // An offer that does not verify is ignored, never answered: see DeviceCore.authentic.
        guard let manifest = core.authentic(offer) else { return nil }
        if offer.version == core.version {
            // The gateway missed our announce: say it again, that ends the job.
            _ = await announce(on: session)
            return nil
        }
        guard config.acceptsUpdates else { return nil }
        if let refusal = core.refusal(of: manifest, job: offer.job) {
            await report(.failed(.rejected, detail: refusal.message), job: offer.job, on: session)
            core.endedJob = offer.job
            update { $0.status = .failed(.rejected) }
            return nil
        }
        offerURL = offer.url
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
        await begin(job, manifest, etag: etag, on: session)
        let image: [UInt8]
        switch await verifiedImage(job, manifest, etag: etag, from: path, on: session) {
        case .ended(let outcome):
            return outcome
        case .image(let bytes):
            image = bytes
        }
        await report(.downloaded, job: job, on: session)
        await report(.verified, job: job, on: session)
        update { $0.status = .installing }
        await report(.installing, job: job, on: session)
        do {
            try core.install(image, manifest)
        } catch {
            await end(job, .install, detail: "cannot write the image: \(error)", on: session)
            return nil
        }
        await report(.installed, job: job, on: session)
        logger.info("installed; rebooting", metadata: ["job.id": "\(job)", "firmware.version": "\(manifest.version)"])
        core.endedJob = job
        startedDownloads.remove(job)
        return .reboot(InstalledUpdate(job: job, version: manifest.version, sequence: manifest.sequence))
    }

    /// Records the download (a reboot resumes it) and reports `downloading`.
    private func begin(_ job: JobID, _ manifest: Manifest, etag: UInt64, on session: CoAPClientSession) async {
        let resumed = startedDownloads.contains(job)
        startedDownloads.insert(job)
        try? core.storage?.recordDownload(.init(job: job, etag: etag))
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
    }

    enum DownloadOutcome {
        case image([UInt8])
        /// The download ended without an image; `update` returns this.
        case ended(BootOutcome?)
    }

    /// The downloaded image once its digest matches the manifest, downloading again after
    /// a mismatch up to `maxVerifyRetries` times.
    private func verifiedImage(
        _ job: JobID, _ manifest: Manifest, etag: UInt64, from path: String, on session: CoAPClientSession
    ) async -> DownloadOutcome {
        var verifyRetries = 0
        while true {
            var image: [UInt8]
            switch await download(job, manifest, etag: etag, from: path, on: session) {
            case .ended(let outcome):
                return .ended(outcome)
            case .image(let bytes):
                image = bytes
            }
            if config.corruptFirstDownload && !corruptionInjected {
                corruptionInjected = true
                image[image.count / 2] ^= 0xFF
                logger.notice("fault injection: corrupted the image", metadata: ["job.id": "\(job)"])
            }
            update { $0.status = .verifying }
            guard let digest = ImageInstaller.digestMismatch(image, manifest) else { return .image(image) }
            guard verifyRetries < config.maxVerifyRetries else {
                await end(job, .verify, detail: "image sha256 \(digest) does not match the manifest's \(manifest.sha256)", on: session)
                return .ended(nil)
            }
            verifyRetries += 1
            logger.warning("image digest mismatch; downloading again", metadata: ["job.id": "\(job)", "attempt": "\(verifyRetries)"])
            core.storage?.discardPartial()
            update {
                $0.verifyRetries += 1
                $0.status = .downloading(percent: 0)
            }
            await report(.downloading(percent: 0), job: job, on: session)
        }
    }

    /// Fetches the image one Block2 block at a time from the first block not yet kept
    /// (the storage keeps the blocks in across reboots), checking every block's ETag and
    /// number; reports `downloading` progress as it goes.
    private func download(
        _ job: JobID, _ manifest: Manifest, etag: UInt64, from path: String, on session: CoAPClientSession
    ) async -> DownloadOutcome {
        var download = ImageDownload(job: job, size: Int(manifest.size), chunkSize: config.blockSize)
        if let kept = core.storage?.partial(job: job, sha256: manifest.sha256, size: download.size) {
            download.restore(prefix: kept[...])
            if download.receivedBytes > 0 {
                logger.info("resuming the download", metadata: ["job.id": "\(job)", "download.offset": "\(download.firstMissingOffset)"])
            }
        }
        if config.downloadsOverHTTP, let url = offerURL {
            return await httpDownload(job, manifest, url: url, prefix: Array(download.image[0..<download.contiguousBytes]), on: session)
        }
        let blocks: CoAPClientSession
        do {
            blocks = try await downloads.session(host: config.host, port: config.port, security: security)
        } catch {
            logger.warning("cannot open a CoAP session for the download", metadata: ["error": "\(error)"])
            return .ended(.retry)
        }
        defer { blocks.close() }
        var progress = BlockProgress(download)
        var failures = 0
        while !download.isComplete {
            if stopRequested || Task.isCancelled { return .ended(.stopped) }
            if let after = config.rebootDuringFirstDownloadAfter, !rebootInjected, ContinuousClock.now - progress.started >= after {
                rebootInjected = true
                core.savePartial(download, sha256: manifest.sha256)
                logger.notice("fault injection: rebooting mid-download", metadata: ["job.id": "\(job)", "download.offset": "\(download.firstMissingOffset)"])
                return .ended(.reboot(nil))
            }
            let number = download.firstMissing
            let problem: String
            switch await fetch(block: number, into: &download, from: path, over: blocks, etag: etag) {
            case .ended(let outcome):
                return .ended(outcome)
            case .resized:
                continue
            case .received(let bytes):
                failures = 0
                await progressed(&progress, download, manifest, received: bytes, on: session)
                continue
            case .problem(let why):
                problem = why
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

    private enum BlockResult {
        /// The block is in; this many bytes.
        case received(Int)
        /// The server chose smaller blocks: ask again in its size.
        case resized
        /// Not the block asked for, or no answer: counts as a failure.
        case problem(String)
        case ended(BootOutcome?)
    }

    /// Asks for block `number` and takes it into `download` when it is the right one.
    private func fetch(
        block number: Int, into download: inout ImageDownload, from path: String, over blocks: CoAPClientSession, etag: UInt64
    ) async -> BlockResult {
        do {
            let response = try await blocks.getBlock(
                path, number: number, size: download.chunkSize, query: identityQuery, timeout: config.requestTimeout)
            if response.code == .forbidden || response.code == .notFound {
                // The job ended on the gateway (canceled, replaced): nothing more to fetch.
                logger.info("job abandoned", metadata: ["job.id": "\(download.job)", "coap.code": "\(response.code)"])
                abandon(download.job)
                return .ended(nil)
            }
            if let block = response.block2, block.size < download.chunkSize {
                // The server may choose smaller blocks (RFC 7959); go on in its size.
                download.rechunk(to: block.size)
                return .resized
            }
            if let why = check(response, block: number, of: download, etag: etag) { return .problem(why) }
            _ = download.receive(offset: number * download.chunkSize, bytes: response.payload)
            return .received(response.payload.count)
        } catch {
            if stopRequested || error is CancellationError { return .ended(.stopped) }
            return .problem("\(error)")
        }
    }

    /// Where a download's progress was last saved and reported.
    private struct BlockProgress {
        let started = ContinuousClock.now
        var reportedPercent: Int
        var reportedAt: ContinuousClock.Instant
        var savedBytes: Int

        init(_ download: ImageDownload) {
            reportedPercent = download.percent
            reportedAt = started
            savedBytes = download.contiguousBytes
        }
    }

    /// A block came in: publish the state, keep every tenth of the image, report each 10 %.
    private func progressed(
        _ progress: inout BlockProgress, _ download: ImageDownload, _ manifest: Manifest, received: Int, on session: CoAPClientSession
    ) async {
        let percent = download.percent
        update {
            $0.bytesReceived += received
            $0.status = .downloading(percent: percent)
        }
        if download.contiguousBytes - progress.savedBytes >= max(download.size / 10, download.chunkSize) {
            core.savePartial(download, sha256: manifest.sha256)
            progress.savedBytes = download.contiguousBytes
        }
        let now = ContinuousClock.now
        if percent / 10 > progress.reportedPercent / 10, now - progress.reportedAt >= config.progressInterval, !download.isComplete {
            progress.reportedPercent = percent
            progress.reportedAt = now
            await report(.downloading(percent: percent), job: download.job, on: session)
        }
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

    /// The ETag the gateway gives an image: the first 8 bytes of its SHA-256, big-endian.
    static func etag(of manifest: Manifest) -> UInt64 {
        UInt64(manifest.sha256.prefix(16), radix: 16) ?? 0
    }

    func abandon(_ job: JobID) {
        core.storage?.discardPartial()
        startedDownloads.remove(job)
        core.endedJob = job
        update {
            $0.job = nil
            $0.status = .idle
        }
    }

    /// The job failed here: report why and go back to waiting.
    func end(_ job: JobID, _ reason: FailureReason, detail: String, on session: CoAPClientSession) async {
        logger.warning("update failed", metadata: ["job.id": "\(job)", "reason": "\(reason.rawValue)", "detail": "\(detail)"])
        await report(.failed(reason, detail: detail), job: job, on: session)
        abandon(job)
        update { $0.status = .failed(reason) }
    }

    /// POSTs a progress report and waits for the answer (CON), so reports arrive in order.
    /// 5.03 means the gateway could not save it: the same report is sent again.
    func report(_ report: DeviceReport, job: JobID, on session: CoAPClientSession) async {
        let body = WireJSON.encode(ProgressBody(job: job, report: report))
        do {
            var response = try await session.post("progress", payload: body, contentFormat: .json, query: identityQuery, timeout: config.requestTimeout)
            var attempts = 0
            while response.code == .serviceUnavailable, attempts < config.maxRetries, !stopRequested {
                attempts += 1
                try await Task.sleep(for: config.retryDelay * attempts)
                response = try await session.post("progress", payload: body, contentFormat: .json, query: identityQuery, timeout: config.requestTimeout)
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
