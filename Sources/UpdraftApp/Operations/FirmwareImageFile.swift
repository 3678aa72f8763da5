import Crypto
import Foundation
import UpdraftCore

/// An image file read whole and checked against the size limit, with its digests: what
/// both the signing machine (`firmware sign`) and the catalog (`firmware add`) start from.
public struct FirmwareImageFile: Sendable {
    public let bytes: [UInt8]
    public let sha256: String

    public init(path: String, maxImageBytes: Int64 = FirmwareLimits().maxImageBytes) throws {
        let limits = FirmwareLimits(maxImageBytes: maxImageBytes)
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        guard let size = (attributes?[.size] as? NSNumber)?.int64Value else {
            throw UpdraftError("firmware_file_missing", "Cannot read '\(path)'. Check the path.")
        }
        try limits.check(size: size)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw UpdraftError("firmware_file_missing", "Cannot read '\(path)'. Check the path and its permissions.")
        }
        bytes = Array(data)
        try limits.check(size: Int64(bytes.count))
        sha256 = Digest.sha256Hex(bytes)
    }

    public func manifest(product: ProductID, version: FirmwareVersion, sequence: Int64, created: Date, keyID: String) -> Manifest {
        Manifest(product: product, version: version, sequence: sequence, size: Int64(bytes.count), sha256: sha256, created: created, keyID: keyID)
    }

    func firmware(_ manifest: Manifest, signed: SignedManifest, createdAt: Date) -> Firmware {
        Firmware(
            product: manifest.product, version: manifest.version, sequence: manifest.sequence, size: manifest.size, sha256: sha256,
            md5: Digest.hex(Insecure.MD5.hash(data: bytes)), createdAt: createdAt, manifest: signed)
    }
}

/// `updraft firmware sign` on the signing machine: a manifest for an image, signed with a
/// private key file, written as two files the gateway takes with `firmware add --manifest
/// --signature`. Needs no data directory and no store.
public enum OfflineSigner {
    /// - Parameter sequence: the anti-rollback number; `nil` takes the signing time in
    ///   seconds since 1970, so later signatures get higher numbers without asking the gateway.
    public static func sign(
        image path: String, product: String, version: String, sequence: Int64?, keyPath: String, now: Date = Date()
    ) throws -> (manifest: Manifest, signed: SignedManifest) {
        let productID = try ProductID(validating: product)
        let versionID = try FirmwareVersion(validating: version)
        let key = try ReleaseKeyFiles(signingKeyPath: keyPath, trustedDirectory: "").signingKey()
        let image = try FirmwareImageFile(path: path)
        let number = sequence ?? Int64(now.timeIntervalSince1970.rounded(.down))
        guard number > 0 else {
            throw UpdraftError("invalid_sequence", "--sequence must be above 0.")
        }
        let manifest = image.manifest(product: productID, version: versionID, sequence: number, created: now, keyID: key.publicKey.keyID)
        return (manifest, try key.sign(manifest))
    }

    /// Writes `<output>.manifest` (the exact signed bytes) and `<output>.sig` (base64).
    public static func write(_ signed: SignedManifest, to output: String) throws -> (manifest: String, signature: String) {
        let paths = (output + ".manifest", output + ".sig")
        try Data(signed.payload).write(to: URL(fileURLWithPath: paths.0))
        try (signed.signatureBase64 + "\n").write(toFile: paths.1, atomically: true, encoding: .utf8)
        return paths
    }
}
