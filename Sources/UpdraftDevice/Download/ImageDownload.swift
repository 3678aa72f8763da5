import UpdraftCore
import UpdraftWire

/// One job's image as it arrives in chunks: where each chunk goes, which window to ask
/// for next, and when the image is complete. Pure bookkeeping, no I/O and no clock: the
/// state a device firmware keeps in RAM next to its flash slot.
///
/// Chunks are indexed by `offset / chunkSize`; a bitmap says which are in. A fresh
/// window (start, resume, stall) is asked from the first missing chunk, so a lost chunk,
/// a dropped connection and a restarted gateway all resume the same way. While chunks
/// flow, the next window is asked for once half of the one in flight has arrived
/// (``aheadRequest(maxCount:)``), so the pipe never drains between windows.
struct ImageDownload: Sendable {
    let job: JobID
    let size: Int
    private(set) var chunkSize: Int
    private(set) var image: [UInt8]
    private var received: [Bool]
    /// Bytes of this image received so far (each chunk counted once).
    private(set) var receivedBytes = 0
    /// Chunk indexes of the window asked for last.
    private(set) var window: Range<Int> = 0..<0
    /// Chunks before this index are all in (kept so that finding the first gap is not a
    /// scan of the whole bitmap per chunk).
    private var missingFrom = 0

    init(job: JobID, size: Int, chunkSize: Int) {
        precondition(size > 0 && chunkSize > 0)
        self.job = job
        self.size = size
        self.chunkSize = chunkSize
        self.image = [UInt8](repeating: 0, count: size)
        self.received = [Bool](repeating: false, count: (size + chunkSize - 1) / chunkSize)
    }

    var chunkCount: Int { received.count }
    var isComplete: Bool { receivedBytes == size }
    var percent: Int { receivedBytes * 100 / size }

    /// The first missing chunk's index, `chunkCount` when complete.
    var firstMissing: Int { missingFrom }
    var firstMissingOffset: Int { Swift.min(firstMissing * chunkSize, size) }

    /// Bytes from 0 that are all received: what is worth keeping across a restart.
    var contiguousBytes: Int { firstMissingOffset }

    private func length(ofChunk index: Int) -> Int { Swift.min(chunkSize, size - index * chunkSize) }

    /// The next window from the first missing chunk, or `nil` when complete.
    mutating func nextRequest(maxCount: Int) -> DownloadRequest? {
        let first = firstMissing
        guard first < chunkCount else { return nil }
        let count = Swift.min(Swift.max(maxCount, 1), chunkCount - first)
        window = first..<(first + count)
        return DownloadRequest(job: job, offset: first * chunkSize, count: count, size: chunkSize)
    }

    /// The window after the one in flight, once at most half of that one is still
    /// outstanding; `nil` when it is too early or nothing lies beyond it. Gaps before the
    /// window (lost chunks) are left to the next ``nextRequest(maxCount:)``.
    mutating func aheadRequest(maxCount: Int) -> DownloadRequest? {
        let maxCount = Swift.max(maxCount, 1)
        let outstanding = window.reduce(0) { $0 + (received[$1] ? 0 : 1) }
        guard outstanding <= maxCount / 2 else { return nil }
        var first = window.upperBound
        while first < chunkCount && received[first] { first += 1 }
        guard first < chunkCount else { return nil }
        let count = Swift.min(maxCount, chunkCount - first)
        window = first..<(first + count)
        return DownloadRequest(job: job, offset: first * chunkSize, count: count, size: chunkSize)
    }

    enum ChunkOutcome: Equatable {
        /// New bytes, stored. `windowComplete`: every chunk of the current window is in.
        case accepted(windowComplete: Bool)
        /// Already have it (a repeat after a re-request). Nothing to do.
        case duplicate
        /// Not a chunk of this download (wrong alignment, length or range). Ignored.
        case invalid
    }

    mutating func receive(offset: Int, bytes: [UInt8]) -> ChunkOutcome {
        guard offset >= 0, offset < size, offset % chunkSize == 0 else { return .invalid }
        let index = offset / chunkSize
        guard bytes.count == length(ofChunk: index) else { return .invalid }
        if received[index] { return .duplicate }
        image.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        markReceived(index, bytes: bytes.count)
        return .accepted(windowComplete: window.allSatisfy { received[$0] })
    }

    /// Takes back the first `bytes.count` bytes of the image, kept from an earlier run.
    /// Only whole chunks count; a partial one is fetched again.
    mutating func restore(prefix bytes: ArraySlice<UInt8>) {
        for index in 0..<chunkCount {
            let start = index * chunkSize
            let end = start + length(ofChunk: index)
            guard end <= bytes.count else { break }
            if received[index] { continue }
            image.replaceSubrange(start..<end, with: bytes[(bytes.startIndex + start)..<(bytes.startIndex + end)])
            markReceived(index, bytes: end - start)
        }
    }

    private mutating func markReceived(_ index: Int, bytes: Int) {
        received[index] = true
        receivedBytes += bytes
        while missingFrom < chunkCount && received[missingFrom] { missingFrom += 1 }
    }

    /// Switches to another chunk size (the gateway's limits changed), keeping the bytes
    /// received from 0 without a gap.
    mutating func rechunk(to newSize: Int) {
        guard newSize != chunkSize else { return }
        let kept = image[0..<contiguousBytes]
        var fresh = ImageDownload(job: job, size: size, chunkSize: newSize)
        fresh.restore(prefix: kept)
        self = fresh
    }

    /// Forgets everything: the image failed verification and is fetched again from 0.
    mutating func restart() {
        self = ImageDownload(job: job, size: size, chunkSize: chunkSize)
    }
}
