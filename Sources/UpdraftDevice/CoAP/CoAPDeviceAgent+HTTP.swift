import CoAP
import Foundation
import UpdraftCore

// `downloadsOverHTTP` on the CoAP device: the image by the offer's signed URL instead of
// Block2; reports, checks and install stay the CoAP path's.
extension CoAPDeviceAgent {
    /// Fetches the image from `prefix.count` (Range resume after an interrupted transfer).
    func httpDownload(_ job: JobID, _ manifest: Manifest, url: String, prefix: [UInt8], on session: CoAPClientSession) async -> DownloadOutcome {
        logger.info("downloading over HTTP", metadata: ["job.id": "\(job)", "download.offset": "\(prefix.count)"])
        let fetch = HTTPImageFetch(
            url: url, size: Int(manifest.size), sha256: manifest.sha256, maxRetries: config.maxRetries, retryDelay: config.retryDelay,
            interruptAtPercent: nil)
        httpReportedPercent = 0
        let size = max(Int(manifest.size), 1)
        let outcome = await fetch.run(prefix: prefix) { bytes in await self.httpProgressed(job, bytes * 100 / size, on: session) }
        switch outcome {
        case .image(let image, let resumes):
            if resumes > 0 { update { $0.resumes += resumes } }
            return .image(image)
        case .refused(_, "download_url_expired"):
            // Booting again announces, and the answer carries the offer with a fresh URL.
            return .ended(.retry)
        case .refused(_, "job_finished"), .refused(404, _):
            logger.info("job abandoned", metadata: ["job.id": "\(job)"])
            abandon(job)
            return .ended(nil)
        case .refused(let status, let code):
            await end(job, .download, detail: "the gateway refused the HTTP download: \(status) \(code)", on: session)
            return .ended(nil)
        case .failed(let why):
            if stopRequested || Task.isCancelled { return .ended(.stopped) }
            await end(job, .download, detail: why, on: session)
            return .ended(nil)
        }
    }

    private func httpProgressed(_ job: JobID, _ percent: Int, on session: CoAPClientSession) async {
        update { $0.status = .downloading(percent: percent) }
        guard percent / 10 > httpReportedPercent / 10, percent < 100 else { return }
        httpReportedPercent = percent
        await report(.downloading(percent: percent), job: job, on: session)
    }
}
