import Foundation
import UpdraftCore
@_exported import UpdraftWire

/// A message a device sent, decoded and validated.
public enum DeviceMessage: Sendable, Equatable {
    case announce(Announcement)
    case presence(online: Bool)
    case download(DownloadRequest)
    case progress(JobID, DeviceReport)
    /// "Is an update pending for me?" (answered on the `pending` topic).
    case pendingQuery
}

/// "Send me `count` chunks of `size` bytes starting at byte `offset` of the job's image."
public struct DownloadRequest: Sendable, Equatable, Codable {
    public var job: JobID
    public var offset: Int
    public var count: Int
    public var size: Int

    public init(job: JobID, offset: Int, count: Int, size: Int) {
        self.job = job
        self.offset = offset
        self.count = count
        self.size = size
    }
}
