public import HTTPTypes
public import UpdraftCore

/// What the HTTP firmware download (`GET|HEAD /v1/fw/<device>/<job>`) needs from the
/// gateway, beside ``HTTPBackend``: checking a signed download URL against the job, and
/// counting the bytes served as the job's download activity. Implemented by the
/// composition root (UpdraftApp) over the engine, the store and the image files.
public protocol DeviceDownloads: Sendable {
    /// The image to serve for a download URL, or why not (with its HTTP status). The raw
    /// path and query values are passed unchecked: refusing malformed ones is part of it.
    func authorize(device: String, job: String, expires: String?, signature: String?) async -> Result<DownloadImage, DownloadRefusal>

    /// `bytes` more of the image went out: the job is alive (its stall clock and timeout
    /// are fed as a chunk request feeds them). Called at most every
    /// ``FirmwareDownloadRoute/activityInterval`` bytes and at the end of each response.
    func served(_ image: DownloadImage, bytes: Int) async
}

/// A firmware image a device may download now.
public struct DownloadImage: Sendable, Equatable {
    public var device: DeviceID
    public var job: JobID
    /// The image file (content-addressed by its digest); read, never loaded whole.
    public var path: String
    public var size: Int
    /// Lowercase hex SHA-256: the strong ETag.
    public var sha256: String

    public init(device: DeviceID, job: JobID, path: String, size: Int, sha256: String) {
        (self.device, self.job, self.path, self.size, self.sha256) = (device, job, path, size, sha256)
    }
}

/// A download refused: the Updraft error (its code is in the device protocol articles)
/// and the status it is sent with.
public struct DownloadRefusal: Error, Sendable {
    public var status: HTTPResponse.Status
    public var error: UpdraftError

    public init(_ status: HTTPResponse.Status, _ error: UpdraftError) {
        (self.status, self.error) = (status, error)
    }

    /// A URL whose signature does not check: altered, forged, another device's or another job's.
    public static let invalidURL = DownloadRefusal(
        .forbidden,
        UpdraftError(
            "download_url_invalid",
            "This download URL is not valid for this device and job; use the url of your current offer unchanged (re-announce to get it again)."))

    public static let expiredURL = DownloadRefusal(
        .forbidden,
        UpdraftError("download_url_expired", "This download URL has expired; re-announce (or ask for the job again) to get a fresh one."))

    /// A well-formed, genuine URL for a job that is no longer the device's active one.
    public static func jobEnded(_ job: JobID) -> DownloadRefusal {
        DownloadRefusal(
            .gone, UpdraftError("job_finished", "Job \(job) has ended (finished, failed, canceled or replaced); there is nothing to download for it."))
    }
}
