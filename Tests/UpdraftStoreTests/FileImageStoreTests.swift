import Foundation
import Testing
import UpdraftCore
import UpdraftStore
import UpdraftTestSupport

@Suite("FileImageStore")
struct FileImageStoreTests {
    @Test("put then get returns the bytes, stored under <sha[0..2]>/<sha>")
    func roundTrip() async throws {
        try await withTemporaryPath { directory in
            let store = try FileImageStore(directory: directory + "/images")
            let bytes = Array("firmware image".utf8)
            let digest = Digest.sha256Hex(bytes)
            #expect(!store.contains(sha256: digest))
            try store.put(bytes, sha256: digest)
            #expect(store.contains(sha256: digest))
            #expect(try store.get(sha256: digest) == bytes)
            #expect(try store.get(sha256: digest.uppercased()) == bytes)
            let path = try store.path(sha256: digest)
            #expect(path == "\(directory)/images/\(digest.prefix(2))/\(digest)")
            #expect(FileManager.default.contents(atPath: path) == Data(bytes))
            // Idempotent, and no temporary files left behind.
            try store.put(bytes, sha256: digest)
            let folder = "\(directory)/images/\(digest.prefix(2))"
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == [digest])
        }
    }

    @Test("a missing image throws firmware_image_missing")
    func missing() async throws {
        try await withTemporaryPath { directory in
            let store = try FileImageStore(directory: directory)
            let error = #expect(throws: UpdraftError.self) {
                try store.get(sha256: String(repeating: "ab", count: 32))
            }
            #expect(error?.code == "firmware_image_missing")
        }
    }

    @Test("a digest that is not 64 hex digits is refused", arguments: ["", "../../etc/passwd", String(repeating: "g", count: 64)])
    func invalidDigest(_ digest: String) async throws {
        try await withTemporaryPath { directory in
            let store = try FileImageStore(directory: directory)
            #expect(throws: UpdraftError.self) { try store.put([1], sha256: digest) }
            #expect(throws: UpdraftError.self) { try store.get(sha256: digest) }
        }
    }
}
