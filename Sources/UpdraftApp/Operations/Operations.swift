import Crypto
import Foundation
import Logging
import UpdraftCore
import UpdraftStore

/// What the CLI does, without printing: each operation works on the store directly, so
/// it works whether or not a gateway runs; a running gateway picks changes up from the
/// event log within milliseconds.
public struct Operations: Sendable {
    public let configuration: UpdraftConfiguration
    public let store: any StatusStore
    public let logger: Logger

    public init(configuration: UpdraftConfiguration, logger: Logger) throws {
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        self.configuration = configuration
        self.logger = logger
        self.store = try UpdraftStoreFactory.open(configuration, logger: logger)
    }

    // MARK: Keys

    /// Makes a new Ed25519 release key pair; refuses to overwrite unless `force`.
    public func generateKeys(force: Bool) throws -> (privatePath: String, publicPath: String, keyID: String) {
        let privatePath = configuration.resolvedSigningKeyPath
        let publicPath = Self.publicKeyPath(for: privatePath)
        if FileManager.default.fileExists(atPath: privatePath) && !force {
            throw UpdraftError("key_exists", "A release key already exists at \(privatePath). Firmware signed with it would no longer verify on devices holding its public key; pass --force only if you mean to replace it.")
        }
        let key = ReleaseSigningKey()
        try FileManager.default.createDirectory(
            atPath: (privatePath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(
            atPath: privatePath, contents: Data((Data(key.rawRepresentation).base64EncodedString() + "\n").utf8),
            attributes: [.posixPermissions: 0o600])
        else {
            throw UpdraftError(
                "key_write_failed", "Cannot write the signing key to \(privatePath); check that the folder is writable.")
        }
        try (Data(key.publicKey.rawRepresentation).base64EncodedString() + "\n").write(
            toFile: publicPath, atomically: true, encoding: .utf8)
        return (privatePath, publicPath, key.publicKey.keyID)
    }

    public static func publicKeyPath(for privatePath: String) -> String {
        (privatePath as NSString).deletingPathExtension + ".pub"
    }

    public func signingKey() throws -> ReleaseSigningKey {
        let path = configuration.resolvedSigningKeyPath
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            throw UpdraftError("key_missing", "No release signing key at \(path). Create one with `updraft keys generate`.")
        }
        return try ReleaseSigningKey(rawRepresentation: Array(raw))
    }

    public func publicKey() throws -> ReleaseVerifyingKey { try signingKey().publicKey }

    // MARK: Firmware

    /// Adds an image to the catalog: content-addressed file, digests, signed manifest.
    public func addFirmware(file: String, product: String, version: String) async throws -> FirmwareAddResult {
        let productID = try ProductID(validating: product)
        let versionID = try FirmwareVersion(validating: version)
        let attributes = try? FileManager.default.attributesOfItem(atPath: file)
        guard let size = (attributes?[.size] as? NSNumber)?.int64Value else {
            throw UpdraftError("firmware_file_missing", "Cannot read '\(file)'. Check the path.")
        }
        let limits = FirmwareLimits(maxImageBytes: configuration.maxImageBytes)
        try limits.check(size: size)
        guard let data = FileManager.default.contents(atPath: file) else {
            throw UpdraftError("firmware_file_missing", "Cannot read '\(file)'. Check the path and its permissions.")
        }
        let bytes = Array(data)
        try limits.check(size: Int64(bytes.count))
        let sha = Digest.sha256Hex(bytes)
        let md5 = Digest.hex(Insecure.MD5.hash(data: bytes))
        let key = try signingKey()
        try FileImageStore(directory: configuration.imagesDirectory).put(bytes, sha256: sha)
        let now = Date()
        return try await store.addFirmware(product: productID, version: versionID, sha256: sha) { sequence in
            let manifest = Manifest(
                product: productID, version: versionID, sequence: sequence, size: Int64(bytes.count), sha256: sha,
                created: now, keyID: key.publicKey.keyID)
            return Firmware(
                product: productID, version: versionID, sequence: sequence, size: Int64(bytes.count), sha256: sha,
                md5: md5, createdAt: now, manifest: try key.sign(manifest))
        }
    }

    public func firmware(_ id: String) async throws -> Firmware {
        _ = try Firmware.parseID(id)
        guard let firmware = try await store.firmware(id: id) else {
            throw UpdraftError.notFound("firmware", id, hint: "List the catalog with `updraft firmware list`.")
        }
        return firmware
    }

    // MARK: Releases

    public func createRelease(firmwareID: String, target: ReleaseTarget, allowDowngrade: Bool) async throws -> ReleasePlan {
        let firmware = try await firmware(firmwareID)
        if case .product(let product) = target, product != firmware.product {
            throw UpdraftError("product_mismatch", "Firmware \(firmware.id) is for product \(firmware.product), not \(product).")
        }
        let release = Release(firmwareID: firmware.id, target: target, allowDowngrade: allowDowngrade, createdAt: Date())
        return try await store.createRelease(release, firmware: firmware)
    }

    /// Devices per job state for a release.
    public func releaseStatus(_ id: ReleaseID) async throws -> [Job] {
        try await store.jobs(release: id)
    }
}
