import Foundation
import UpdraftCore
import UpdraftWire

// `downloadsOverHTTP`: the image by the offer's signed URL instead of chunk windows. The
// fetch runs in a task of its own and reports back to the actor; the rest (reports,
// digest and signature checks, install) is the chunk path's.
extension UpdraftDeviceAgent {
    /// Starts fetching the rest of the image (from the bytes already held) unless a fetch runs.
    func startFetch(_ active: ActiveJob) {
        guard fetchTask == nil, let url = active.offer.url else { return }
        let job = active.offer.job
        let fetch = HTTPImageFetch(
            url: url, size: active.download.size, sha256: active.manifest.sha256, maxRetries: config.maxRetries,
            retryDelay: config.retryDelay, interruptAtPercent: dropInjected ? nil : config.dropConnectionAtPercent)
        if fetch.interruptAtPercent != nil { dropInjected = true }
        let prefix = Array(active.download.image[0..<active.download.contiguousBytes])
        logger.info("downloading over HTTP", metadata: ["job.id": "\(job)", "download.offset": "\(prefix.count)"])
        fetchTask = Task {
            let outcome = await fetch.run(prefix: prefix) { bytes in await self.fetchProgressed(job, bytes: bytes) }
            await self.fetched(job, outcome)
        }
    }

    func cancelFetch() {
        fetchTask?.cancel()
        fetchTask = nil
    }

    private func fetchProgressed(_ jobID: JobID, bytes: Int) {
        guard var active = job, active.offer.job == jobID else { return }
        let percent = bytes * 100 / max(active.download.size, 1)
        active.lastActivity = .now
        active.stalls = 0
        update {
            $0.bytesReceived = bytes
            $0.status = .downloading(percent: percent)
        }
        if percent / 10 > active.reportedPercent / 10, percent < 100, active.lastActivity - active.reportedAt >= config.progressInterval {
            active.reportedPercent = percent
            active.reportedAt = active.lastActivity
            report(.downloading(percent: percent), job: jobID)
        }
        job = active
    }

    private func fetched(_ jobID: JobID, _ outcome: HTTPImageFetch.Outcome) {
        fetchTask = nil
        guard var active = job, active.offer.job == jobID else { return }
        switch outcome {
        case .image(var image, let resumes):
            if config.corruptFirstDownload && !corruptionInjected {
                corruptionInjected = true
                image[image.count / 2] ^= 0xFF
                logger.notice("fault injection: corrupted the image", metadata: ["job.id": "\(jobID)"])
            }
            if resumes > 0 { update { $0.resumes += resumes } }
            active.download.restart()
            active.download.restore(prefix: image[...])
            // Digest and manifest checks, then the install: as for chunks (a mismatch fetches again).
            finish(active)
            if pendingReboot != nil, connected, let client {
                // `run()` reboots between two messages, and no chunk is coming: a query's
                // answer (on the pending topic) is the next one.
                client.publishNoWait(topic: dialect.topic(.query, of: config.id), payload: [], qos: .atLeastOnce)
            }
        case .refused(_, "download_url_expired"):
            // The gateway answers a new announcement with the offer again, with a fresh URL.
            logger.info("download URL expired; announcing for a fresh offer", metadata: ["job.id": "\(jobID)"])
            announce()
        case .refused(_, "job_finished"), .refused(404, _):
            abandon(active)
        case .refused(let status, let code):
            end(active, .download, detail: "the gateway refused the HTTP download: \(status) \(code)")
        case .failed(let why):
            end(active, .download, detail: why)
        }
    }

    /// The job ended on the gateway (canceled, replaced): nothing more to fetch.
    func abandon(_ active: ActiveJob) {
        logger.info("job abandoned", metadata: ["job.id": "\(active.offer.job)"])
        forget(active, status: .idle)
    }

    /// Drops the job (ended here or on the gateway) and what was fetched of it.
    func forget(_ active: ActiveJob, status: DeviceStatus) {
        cancelFetch()
        core.storage?.discardPartial()
        core.endedJob = active.offer.job
        job = nil
        update {
            $0.job = nil
            $0.status = status
        }
    }
}
