import Foundation
import Testing
import UpdraftCore
import UpdraftStore
import UpdraftTestSupport

@Suite("FirmwareImageCache")
struct FirmwareImageCacheTests {
    /// Puts `count` bytes of `fill` into the store and returns their digest.
    func put(_ store: FileImageStore, _ fill: UInt8, count: Int = 100) throws -> String {
        let bytes = [UInt8](repeating: fill, count: count)
        let digest = Digest.sha256Hex(bytes)
        try store.put(bytes, sha256: digest)
        return digest
    }

    @Test("loads an image once and serves chunks from memory")
    func loadsOnce() async throws {
        try await withTemporaryPath { directory in
            let store = try FileImageStore(directory: directory)
            let bytes = (0..<1000).map { UInt8($0 % 251) }
            let digest = Digest.sha256Hex(bytes)
            try store.put(bytes, sha256: digest)
            let cache = FirmwareImageCache(store: store)
            #expect(try cache.image(sha256: digest) == bytes)
            #expect(try cache.chunk(sha256: digest, offset: 0, count: 256) == Array(bytes[0..<256]))
            #expect(try cache.chunk(sha256: digest, offset: 900, count: 256) == Array(bytes[900...]))
            #expect(try cache.chunk(sha256: digest, offset: 1000, count: 256) == [])
            #expect(cache.loadCount == 1)
            #expect(cache.cachedBytes == 1000)
            // Served from memory even after the file is gone.
            try FileManager.default.removeItem(atPath: try store.path(sha256: digest))
            #expect(try cache.image(sha256: digest) == bytes)
        }
    }

    @Test("evicts the least recently used image when over capacity")
    func evictsLRU() async throws {
        try await withTemporaryPath { directory in
            let store = try FileImageStore(directory: directory)
            let a = try put(store, 1)
            let b = try put(store, 2)
            let c = try put(store, 3)
            let cache = FirmwareImageCache(store: store, capacityBytes: 250)
            _ = try cache.image(sha256: a)
            _ = try cache.image(sha256: b)
            _ = try cache.chunk(sha256: a, offset: 0, count: 10)  // a is now the most recent
            _ = try cache.image(sha256: c)
            #expect(cache.isCached(sha256: a))
            #expect(!cache.isCached(sha256: b))
            #expect(cache.isCached(sha256: c))
            #expect(cache.cachedBytes == 200)
            #expect(cache.loadCount == 3)
            _ = try cache.image(sha256: b)
            #expect(cache.loadCount == 4)
            #expect(!cache.isCached(sha256: a))
        }
    }

    @Test("an image larger than the cache is served but not kept")
    func tooLarge() async throws {
        try await withTemporaryPath { directory in
            let store = try FileImageStore(directory: directory)
            let small = try put(store, 1, count: 50)
            let large = try put(store, 2, count: 500)
            let cache = FirmwareImageCache(store: store, capacityBytes: 100)
            _ = try cache.image(sha256: small)
            #expect(try cache.image(sha256: large).count == 500)
            #expect(!cache.isCached(sha256: large))
            #expect(cache.isCached(sha256: small))
            #expect(cache.cachedBytes == 50)
        }
    }

    @Test("a damaged or missing image fails with a clear error")
    func damagedOrMissing() async throws {
        try await withTemporaryPath { directory in
            let store = try FileImageStore(directory: directory)
            let claimed = Digest.sha256Hex(Array("good".utf8))
            try store.put(Array("evil".utf8), sha256: claimed)
            let cache = FirmwareImageCache(store: store)
            let corrupt = #expect(throws: UpdraftError.self) { try cache.image(sha256: claimed) }
            #expect(corrupt?.code == "firmware_image_corrupt")
            #expect(!cache.isCached(sha256: claimed))
            let missing = #expect(throws: UpdraftError.self) {
                try cache.chunk(sha256: String(repeating: "0", count: 64), offset: 0, count: 1)
            }
            #expect(missing?.code == "firmware_image_missing")
        }
    }
}
