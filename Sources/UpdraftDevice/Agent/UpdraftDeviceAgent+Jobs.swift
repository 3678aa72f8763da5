import Foundation
import Logging
import Mosquitto
import UpdraftCore
import UpdraftWire

// The device protocol's messages and the download, on the agent's actor: offers, chunk
// windows, error replies, the timers, the install and the reports.
extension UpdraftDeviceAgent {
    // MARK: Messages

    func handle(_ message: MosquittoMessage) {
        guard let parsed = dialect.parse(message.topic), parsed.device == config.id else { return }
        let rest = parsed.rest
        switch parsed.kind {
        case .job where rest.isEmpty:
            received(offer: message.payload)
        case .chunk where rest.count == 2:
            received(chunk: message.payload, job: rest[0], offset: rest[1])
        case .error where rest.isEmpty:
            received(error: message.payload)
        default:
            logger.debug("ignored message", metadata: ["mqtt.topic": "\(message.topic)"])
        }
    }

    private func received(offer payload: [UInt8]) {
        let offer: JobOffer
        do {
            offer = try dialect.decodeOffer(payload)
        } catch {
            core.ignored(offer: nil, error)
            return
        }
        if pendingReboot != nil || offer.job == core.endedJob { return }
        // Checked first: an offer that does not verify changes nothing, not even the job in progress.
        guard let manifest = core.authentic(offer) else { return }
        if var active = job, active.offer.job == offer.job {
            if active.manifest == manifest { resume(&active, offer: offer) }
            job = active
            return
        }
        if offer.version == core.version {
            // The gateway missed our announce: say it again, that ends the job.
            announce()
            return
        }
        guard config.acceptsUpdates else {
            announce()
            return
        }
        if let refusal = core.refusal(of: manifest, job: offer.job) {
            report(.failed(.rejected, detail: refusal.message), job: offer.job)
            if job == nil { update { $0.status = .failed(.rejected) } }
            return
        }
        if let previous = job {
            logger.notice("new job replaces the current one", metadata: ["job.id": "\(offer.job)", "job.previous": "\(previous.offer.job)"])
            core.storage?.discardPartial()
            cancelFetch()
        }
        start(offer, manifest)
    }

    private func start(_ offer: JobOffer, _ manifest: Manifest) {
        var download = ImageDownload(job: offer.job, size: Int(manifest.size), chunkSize: chunkSize(for: offer.chunk ?? ChunkLimits()))
        var resumed = false
        if let kept = core.storage?.partial(job: offer.job, sha256: manifest.sha256, size: Int(manifest.size)) {
            download.restore(prefix: kept[...])
            resumed = download.receivedBytes > 0
        }
        var active = ActiveJob(offer: offer, manifest: manifest, download: download)
        active.overHTTP = config.downloadsOverHTTP && offer.url != nil
        logger.info(
            "update accepted",
            metadata: ["job.id": "\(offer.job)", "firmware.version": "\(manifest.version)", "firmware.size": "\(manifest.size)",
                       "download.offset": "\(download.firstMissingOffset)"])
        update {
            $0.job = offer.job
            $0.status = .downloading(percent: download.percent)
            if resumed { $0.resumes += 1 }
        }
        active.reportedPercent = download.percent
        report(.downloading(percent: download.percent), job: offer.job)
        if download.isComplete {
            finish(active)
        } else {
            requestWindow(&active)
            job = active
        }
    }

    /// The offer of the job in progress came again: after a reconnect the gateway resends
    /// it, and the download continues from the first missing chunk.
    private func resume(_ active: inout ActiveJob, offer: JobOffer) {
        active.offer = offer
        if active.overHTTP {
            // A fresh offer brings a fresh URL: go on with it unless a fetch is running.
            requestWindow(&active)
            return
        }
        let size = chunkSize(for: offer.chunk ?? ChunkLimits(), keeping: active.download.chunkSize)
        if size != active.download.chunkSize {
            active.download.rechunk(to: size)
            active.requestEpoch = -1
        }
        // Asked on this connection already (offers come in pairs: presence, announce);
        // a lost window is the stall timer's business.
        guard active.requestEpoch != epoch else { return }
        requestWindow(&active)
    }

    private func received(chunk payload: [UInt8], job jobText: Substring, offset offsetText: Substring) {
        guard let current = job?.offer.job, jobText == current.rawValue, let offset = Int(offsetText) else { return }
        var bytes = payload
        let corrupt = config.corruptFirstDownload && !corruptionInjected && !bytes.isEmpty
        if corrupt { bytes[bytes.count / 2] ^= 0xFF }
        // Written in place in `job`: through a copy, every chunk would copy the whole image.
        guard case .accepted(let windowComplete)? = job?.download.receive(offset: offset, bytes: bytes),
            var active = job
        else { return }
        if corrupt {
            corruptionInjected = true
            logger.notice("fault injection: corrupted a chunk", metadata: ["download.offset": "\(offset)"])
        }
        active.lastActivity = .now
        active.refusals = 0
        active.stalls = 0
        let percent = active.download.percent
        update {
            $0.bytesReceived += bytes.count
            $0.status = .downloading(percent: percent)
        }
        if active.download.isComplete {
            finish(active)
            return
        }
        if percent / 10 > active.reportedPercent / 10, active.lastActivity - active.reportedAt >= config.progressInterval {
            active.reportedPercent = percent
            active.reportedAt = active.lastActivity
            report(.downloading(percent: percent), job: active.offer.job)
        }
        if let at = config.dropConnectionAtPercent, !dropInjected, percent >= at {
            dropInjected = true
            logger.notice("fault injection: dropping the connection", metadata: ["download.percent": "\(percent)"])
            client?.simulateNetworkDrop()
            connected = false
        }
        if windowComplete { savePartial(active) }
        if let ahead = active.download.aheadRequest(maxCount: windowLimit(active)) {
            send(ahead, &active)
        } else if windowComplete {
            requestWindow(&active)  // the rest has gaps: ask from the first missing chunk
        }
        job = active
    }

    private func received(error payload: [UInt8]) {
        let reply: ErrorReply
        do {
            reply = try dialect.decodeError(payload)
        } catch {
            logger.warning("unreadable error reply", metadata: ["error.code": "\(error.code)"])
            return
        }
        logger.notice(
            "gateway refused a message",
            metadata: ["error.code": "\(reply.code)", "error.message": "\(reply.message)", "job.id": "\(reply.job?.rawValue ?? "-")"])
        if reply.code == "unavailable" {
            scheduleRetry(after: reply)
            return
        }
        guard var active = job, reply.job == active.offer.job else { return }
        if reply.code == "unknown_job" {
            // Canceled, or ended on the gateway: nothing more to fetch.
            abandon(active)
            return
        }
        // Only refused download requests carry an offset; a refused report needs no retry.
        guard reply.offset != nil else { return }
        active.refusals += 1
        if active.refusals > config.maxRetries {
            end(active, .download, detail: "the gateway refused \(active.refusals) download requests: \(reply.message)")
            return
        }
        active.retryAt = .now + config.retryDelay * active.refusals
        job = active
    }

    /// Nothing of a refused message was applied: announce again, or send the refused
    /// report and every later one of its job again, in order, after the retry delay.
    private func scheduleRetry(after reply: ErrorReply) {
        var retry = unavailableRetry ?? UnavailableRetry(at: .now + config.retryDelay)
        if let job = reply.job {
            // Replies come in the order of the reports: the first refused one stays the start.
            if retry.job == nil {
                retry.job = job
                retry.fromState = reply.state
            }
        } else {
            retry.announce = true
        }
        unavailableRetry = retry
    }

    private func sendRetry(_ retry: UnavailableRetry) {
        logger.info("sending again what the gateway could not save", metadata: ["job.id": "\(retry.job?.rawValue ?? "-")"])
        if retry.announce { announce() }
        guard let job = retry.job, let sent = sentReports, sent.job == job else { return }
        let start = retry.fromState.flatMap { state in sent.reports.lastIndex { $0.name == state } } ?? 0
        for report in sent.reports[start...] { publish(report, job: job) }
    }

    /// Timers: send again what the gateway could not save, retry after a refusal, and ask
    /// again when a window stalls.
    func tick(now: ContinuousClock.Instant) {
        if connected, let retry = unavailableRetry, now >= retry.at {
            unavailableRetry = nil
            sendRetry(retry)
        }
        guard connected, var active = job else { return }
        if let retryAt = active.retryAt {
            guard now >= retryAt else { return }
            active.retryAt = nil
        } else {
            // Each stall in a row waits twice as long (up to 8x): a busy gateway is not flooded with repeats.
            let timeout = config.requestTimeout * (1 << min(active.stalls, 3))
            guard now - active.lastActivity >= timeout else { return }
            active.stalls += 1
            logger.info(
                "window stalled; asking again",
                metadata: ["job.id": "\(active.offer.job)", "download.offset": "\(active.download.firstMissingOffset)"])
            update { $0.stalls += 1 }
        }
        requestWindow(&active)
        job = active
    }

    // MARK: Download

    private func windowLimit(_ active: ActiveJob) -> Int { min(config.windowCount, (active.offer.chunk ?? ChunkLimits()).maxCount) }

    /// Asks for a window from the first missing chunk: at the start, on resume and after a
    /// stall. Over HTTP: starts the fetch unless one runs.
    func requestWindow(_ active: inout ActiveJob) {
        active.lastActivity = .now
        if active.overHTTP {
            startFetch(active)
            return
        }
        guard connected, client != nil, let request = active.download.nextRequest(maxCount: windowLimit(active)) else { return }
        send(request, &active)
    }

    private func send(_ request: DownloadRequest, _ active: inout ActiveJob) {
        guard connected, let client else { return }
        if active.requestEpoch >= 0, active.requestEpoch != epoch, request.offset > 0 {
            // First request on a new connection for a download that had begun.
            update { $0.resumes += 1 }
            logger.info("resuming download", metadata: ["job.id": "\(active.offer.job)", "download.offset": "\(request.offset)"])
        }
        client.publishNoWait(
            topic: dialect.topic(.download, of: config.id), payload: dialect.encode(request), qos: .atLeastOnce)
        active.requestEpoch = epoch
    }

    /// The configured (or the gateway's preferred) size, within the offer's limits.
    private func chunkSize(for limits: ChunkLimits, keeping current: Int? = nil) -> Int {
        if let current, (limits.min...max(limits.min, limits.max)).contains(current) { return current }
        return min(max(config.chunkSize ?? limits.preferred, limits.min), max(limits.min, limits.max))
    }

    private func savePartial(_ active: ActiveJob) { core.savePartial(active.download, sha256: active.manifest.sha256) }

    /// The last chunk is in: verify, install, and leave the reboot to `run()`.
    func finish(_ active: ActiveJob) {
        var active = active
        let jobID = active.offer.job
        update { $0.status = .verifying }
        if let digest = ImageInstaller.digestMismatch(active.download.image, active.manifest) {
            guard active.verifyRetries < config.maxVerifyRetries else {
                end(active, .verify, detail: "image sha256 \(digest) does not match the manifest's \(active.manifest.sha256)")
                return
            }
            active.verifyRetries += 1
            logger.warning("image digest mismatch; downloading again", metadata: ["job.id": "\(jobID)", "attempt": "\(active.verifyRetries)"])
            core.storage?.discardPartial()
            active.download.restart()
            active.reportedPercent = 0
            update {
                $0.verifyRetries += 1
                $0.status = .downloading(percent: 0)
            }
            report(.downloading(percent: 0), job: jobID)
            requestWindow(&active)
            job = active
            return
        }
        report(.downloaded, job: jobID)
        report(.verified, job: jobID)
        update { $0.status = .installing }
        report(.installing, job: jobID)
        do {
            try core.install(active.download.image, active.manifest)
        } catch {
            end(active, .install, detail: "cannot write the image: \(error)")
            return
        }
        logger.info("installed; rebooting", metadata: ["job.id": "\(jobID)", "firmware.version": "\(active.manifest.version)"])
        job = nil
        core.endedJob = jobID
        pendingReboot = InstalledUpdate(job: jobID, version: active.manifest.version, sequence: active.manifest.sequence)
        update { $0.status = .rebooting }
    }

    /// The job failed here: report why and go back to waiting.
    func end(_ active: ActiveJob, _ reason: FailureReason, detail: String) {
        logger.warning("update failed", metadata: ["job.id": "\(active.offer.job)", "reason": "\(reason.rawValue)", "detail": "\(detail)"])
        report(.failed(reason, detail: detail), job: active.offer.job)
        forget(active, status: .failed(reason))
    }

    func report(_ report: DeviceReport, job: JobID) {
        if sentReports?.job == job {
            sentReports?.reports.append(report)
        } else {
            sentReports = (job, [report])
        }
        publish(report, job: job)
    }

    private func publish(_ report: DeviceReport, job: JobID) {
        client?.publishNoWait(
            topic: dialect.topic(.progress, of: config.id), payload: dialect.encode(ProgressBody(job: job, report: report)),
            qos: .atLeastOnce)
    }
}

/// The job being downloaded.
struct ActiveJob {
    var offer: JobOffer
    var manifest: Manifest
    var download: ImageDownload
    /// The connection the last window was asked on (see `epoch`).
    var requestEpoch = -1
    /// Last new chunk or request: the stall timer counts from here.
    var lastActivity = ContinuousClock.now
    var reportedPercent = 0
    /// When the last `downloading` report went out (see `DeviceConfig.progressInterval`).
    var reportedAt = ContinuousClock.now
    var verifyRetries = 0
    /// Download requests refused in a row.
    var refusals = 0
    /// Windows that stalled in a row.
    var stalls = 0
    var retryAt: ContinuousClock.Instant?
    /// Downloaded over HTTP by the offer's `url` rather than in chunk windows.
    var overHTTP = false
}

/// What to send again after `unavailable` replies.
struct UnavailableRetry {
    var at: ContinuousClock.Instant
    var announce = false
    var job: JobID?
    /// The state of the first refused report of `job`.
    var fromState: String?
}

enum Presence {
    static let online = Array("online".utf8)
    static let offline = Array("offline".utf8)
}
