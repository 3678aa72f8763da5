import Foundation
import UpdraftCore

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

extension DownloadRequest {
    /// Checks the request against the limits and the image size; returns the byte range of each chunk.
    public func chunkRanges(imageSize: Int, limits: ChunkLimits) throws(UpdraftError) -> [Range<Int>] {
        guard (limits.min...limits.max).contains(size) else {
            throw UpdraftError("chunk_size_out_of_bounds", "Chunk size \(size) is outside \(limits.min)...\(limits.max) bytes; pick one in range (preferred \(limits.preferred)).")
        }
        guard (1...limits.maxCount).contains(count) else {
            throw UpdraftError("chunk_count_out_of_bounds", "Ask for 1...\(limits.maxCount) chunks per request, not \(count).")
        }
        guard offset >= 0, offset < imageSize else {
            throw UpdraftError("offset_out_of_range", "Offset \(offset) is outside the image (0..<\(imageSize)); the download is complete at \(imageSize) bytes.")
        }
        var ranges: [Range<Int>] = []
        var start = offset
        while ranges.count < count, start < imageSize {
            let end = Swift.min(start + size, imageSize)
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }
}
