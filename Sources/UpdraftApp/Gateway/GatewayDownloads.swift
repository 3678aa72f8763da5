import Foundation
import HTTPTypes
import UpdraftAdapter
import UpdraftCore
import UpdraftHTTP
import UpdraftStore

#if canImport(Glibc)
import Glibc
#endif

/// HTTP firmware downloads (`/v1/fw/<device>/<job>`) over the running gateway: the signed
/// URL is checked against the job's image digest, then the engine authorises the download
/// as it does a chunk request (which feeds the job's activity); the bytes come from the
/// image file, never the cache.
///
/// Answers: a path that names no valid device or job → 404 `download_not_found`; no or a
/// wrong signature (altered, forged, another device's or job's URL) → 403
/// `download_url_invalid`; a genuine URL past its expiry → 403 `download_url_expired`;
/// a genuine URL of a job that is no longer the device's active one (finished, canceled,
/// replaced) → 410 `job_finished`; the engine's refusals (`device_revoked` 403,
/// `job_installing` 409); an image that cannot be read → 503.
struct GatewayDownloads: DeviceDownloads {
    let engine: UpdateEngine
    let store: any StatusStore
    let signer: DownloadURLSigner
    let images: FileImageStore
    let counters: GatewayCounters
    let now: @Sendable () -> Date

    func authorize(device: String, job: String, expires: String?, signature: String?) async -> Result<DownloadImage, DownloadRefusal> {
        guard let device = try? DeviceID(validating: device), let job = try? JobID(validating: job) else {
            return refuse(
                DownloadRefusal(.notFound, UpdraftError("download_not_found", "No firmware download at this path; use the url of your offer unchanged.")))
        }
        guard let signature, let expires = expires.flatMap({ Int64($0) }) else { return refuse(.invalidURL) }
        let (firmware, active) = await lookUp(device, job)
        guard let firmware, signer.isValid(signature, device: device, job: job, sha256: firmware.sha256, expires: expires) else {
            return refuse(.invalidURL)
        }
        guard expires >= Int64(now().timeIntervalSince1970) else { return refuse(.expiredURL) }
        guard active else { return refuse(.jobEnded(job)) }
        switch await engine.authorizeDownload(device, job: job) {
        case .failure(let error):
            let status: DownloadRefusal = switch error.code {
            case "device_revoked": DownloadRefusal(.forbidden, error)
            case "job_installing": DownloadRefusal(.conflict, error)
            default: .jobEnded(job)
            }
            return refuse(status)
        case .success(let firmware):
            return image(firmware, device: device, job: job)
        }
    }

    func served(_ image: DownloadImage, bytes: Int) async {
        counters.increment("bytes.sent", by: bytes)
        // The same call a chunk request makes: the job's stall clock and timeout see activity.
        _ = await engine.authorizeDownload(image.device, job: image.job)
    }

    /// The job's firmware, and whether the job is the device's active one. An ended job is
    /// read from the store, so its genuine URL is told apart from a forged one.
    private func lookUp(_ device: DeviceID, _ job: JobID) async -> (Firmware?, active: Bool) {
        if let current = await engine.activeJob(of: device), current.id == job {
            return (await engine.firmware(for: current), true)
        }
        guard let stored = try? await store.job(job), stored.deviceID == device else { return (nil, false) }
        return ((try? await store.firmware(id: stored.firmwareID)) ?? nil, false)
    }

    private func image(_ firmware: Firmware, device: DeviceID, job: JobID) -> Result<DownloadImage, DownloadRefusal> {
        var info = stat()
        guard let path = try? images.path(sha256: firmware.sha256), stat(path, &info) == 0, Int64(info.st_size) == firmware.size else {
            return refuse(
                DownloadRefusal(
                    .serviceUnavailable, UpdraftError("image_unavailable", "The gateway cannot read the image right now; retry later.")))
        }
        counters.increment("downloads")
        return .success(DownloadImage(device: device, job: job, path: path, size: Int(firmware.size), sha256: firmware.sha256.lowercased()))
    }

    private func refuse(_ refusal: DownloadRefusal) -> Result<DownloadImage, DownloadRefusal> {
        counters.increment("rejected.\(refusal.error.code)")
        return .failure(refusal)
    }
}
