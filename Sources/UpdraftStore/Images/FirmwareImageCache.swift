import Synchronization
import UpdraftCore

/// Firmware images held in memory, so the gateway serves download chunks without disk
/// reads. Loaded from a ``FirmwareImageStore`` on first use; bounded by total bytes,
/// evicting the least recently used image.
public final class FirmwareImageCache: Sendable {
    public static let defaultCapacityBytes = 512 << 20

    public let capacityBytes: Int
    let store: any FirmwareImageStore
    let verifiesDigest: Bool
    let state = Mutex(State())
    /// Serialises loads so that many devices starting on the same image load it once.
    let loading = Mutex(())

    struct State {
        var entries: [String: Entry] = [:]
        var totalBytes = 0
        var clock: UInt64 = 0
        var loads = 0
    }

    struct Entry {
        var bytes: [UInt8]
        var lastUse: UInt64
    }

    /// - Parameters:
    ///   - verifiesDigest: check each image against its SHA-256 when it is loaded, so a
    ///     damaged file fails once at the gateway (`firmware_image_corrupt`) instead of on
    ///     every device after a full download.
    public init(
        store: any FirmwareImageStore, capacityBytes: Int = FirmwareImageCache.defaultCapacityBytes,
        verifiesDigest: Bool = true
    ) {
        self.store = store
        self.capacityBytes = capacityBytes
        self.verifiesDigest = verifiesDigest
    }

    /// The whole image. Throws `firmware_image_missing` or `firmware_image_corrupt`.
    public func image(sha256: String) throws -> [UInt8] {
        let key = sha256.lowercased()
        if let bytes = cached(key) { return bytes }
        return try loading.withLock { _ in
            // Another caller may have loaded it while we waited.
            if let bytes = cached(key) { return bytes }
            let bytes = try store.get(sha256: key)
            if verifiesDigest, Digest.sha256Hex(bytes) != key {
                throw UpdraftError(
                    "firmware_image_corrupt",
                    "The stored image for sha256 \(key) does not match its digest. Restore the images directory from a backup, or add the firmware file again."
                )
            }
            insert(bytes, for: key)
            return bytes
        }
    }

    /// `count` bytes from `offset`, fewer at the end, empty past the end.
    public func chunk(sha256: String, offset: Int, count: Int) throws -> [UInt8] {
        let bytes = try image(sha256: sha256)
        guard offset >= 0, count > 0, offset < bytes.count else { return [] }
        return Array(bytes[offset..<min(bytes.count, offset + min(count, bytes.count - offset))])
    }

    public func isCached(sha256: String) -> Bool {
        state.withLock { $0.entries[sha256.lowercased()] != nil }
    }

    /// Bytes currently held.
    public var cachedBytes: Int { state.withLock { $0.totalBytes } }

    /// How many times an image was read from the store (for tests and metrics).
    public var loadCount: Int { state.withLock { $0.loads } }

    public func remove(sha256: String) {
        state.withLock { state in
            if let entry = state.entries.removeValue(forKey: sha256.lowercased()) {
                state.totalBytes -= entry.bytes.count
            }
        }
    }

    func cached(_ key: String) -> [UInt8]? {
        state.withLock { state in
            guard var entry = state.entries[key] else { return nil }
            state.clock += 1
            entry.lastUse = state.clock
            let bytes = entry.bytes
            state.entries[key] = entry
            return bytes
        }
    }

    func insert(_ bytes: [UInt8], for key: String) {
        state.withLock { state in
            state.loads += 1
            // An image larger than the whole cache is served but not kept.
            guard bytes.count <= capacityBytes else { return }
            while state.totalBytes + bytes.count > capacityBytes,
                let oldest = state.entries.min(by: { $0.value.lastUse < $1.value.lastUse })
            {
                state.entries.removeValue(forKey: oldest.key)
                state.totalBytes -= oldest.value.bytes.count
            }
            state.clock += 1
            state.entries[key] = Entry(bytes: bytes, lastUse: state.clock)
            state.totalBytes += bytes.count
        }
    }
}
