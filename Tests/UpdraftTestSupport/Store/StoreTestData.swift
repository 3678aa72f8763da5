import Foundation
import Synchronization
import UpdraftCore

// Data the store contract and the engine tests build their stores from.

package let t0 = Date(timeIntervalSince1970: 1_700_000_000)
package let signingKey = ReleaseSigningKey()

package func sha(_ content: String) -> String { Digest.sha256Hex(Array(content.utf8)) }

package func makeFirmware(
    _ product: ProductID, _ version: FirmwareVersion, sequence: Int64, content: String? = nil
) throws -> Firmware {
    let bytes = Array((content ?? "\(product)@\(version)").utf8)
    let digest = Digest.sha256Hex(bytes)
    let created = t0 + Double(sequence)
    let manifest = Manifest(
        product: product, version: version, sequence: sequence, size: Int64(bytes.count), sha256: digest,
        created: created, keyID: signingKey.publicKey.keyID)
    return Firmware(
        product: product, version: version, sequence: sequence, size: Int64(bytes.count), sha256: digest,
        md5: String(repeating: "0", count: 32), createdAt: created, manifest: try signingKey.sign(manifest))
}

@discardableResult
package func addFirmware(
    _ store: any StatusStore, _ product: ProductID, _ version: FirmwareVersion, content: String? = nil
) async throws -> FirmwareAddResult {
    let content = content ?? "\(product)@\(version)"
    return try await store.addFirmware(product: product, version: version, sha256: sha(content)) { sequence in
        try makeFirmware(product, version, sequence: sequence, content: content)
    }
}

package final class Counter: Sendable {
    private let count = Mutex(0)
    package func increment() { count.withLock { $0 += 1 } }
    package var value: Int { count.withLock { $0 } }
}
