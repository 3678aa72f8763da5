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

    /// - Parameter access: `.existing` for commands that work on recorded data: a
    ///   mistyped data directory is then an error, not a fresh empty store.
    public init(configuration: UpdraftConfiguration, access: UpdraftStoreFactory.Access = .create, logger: Logger) throws {
        if access == .existing {
            try DataDirectory.requireExisting(configuration.dataDirectory)
        } else {
            try DataDirectory.create(configuration.dataDirectory)
        }
        self.configuration = configuration
        self.logger = logger
        self.store = try UpdraftStoreFactory.open(configuration, access: access, logger: logger)
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

    public func firmware(_ id: FirmwareID) async throws -> Firmware {
        guard let firmware = try await store.firmware(id: id) else {
            throw UpdraftError.notFound("firmware", id.rawValue, hint: "List the catalog with `updraft firmware list`.")
        }
        return firmware
    }

    // MARK: Releases

    /// - Parameter allowUnknown: release to device ids that never connected (their jobs
    ///   wait for them). The CLI passes false unless --allow-unknown.
    public func createRelease(
        firmwareID: FirmwareID, target: ReleaseTarget, allowDowngrade: Bool, allowUnknown: Bool = true
    ) async throws -> ReleasePlan {
        let firmware = try await firmware(firmwareID)
        if case .product(let product) = target, product != firmware.product {
            throw UpdraftError("product_mismatch", "Firmware \(firmware.id) is for product \(firmware.product), not \(product).")
        }
        try checkImage(of: firmware)
        let release = Release(firmwareID: firmware.id, target: target, allowDowngrade: allowDowngrade, createdAt: Date())
        // Planned on a snapshot first: a refused plan stores nothing. The store plans
        // again inside its transaction, against the fleet as it is then.
        if let refusal = try await preview(release, firmware).refusal(allowUnknown: allowUnknown) { throw refusal }
        return try await store.createRelease(release, firmware: firmware)
    }

    private func preview(_ release: Release, _ firmware: Firmware) async throws -> ReleasePlan {
        let devices = Dictionary(try await store.devices().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let active = Dictionary(try await store.activeJobs().map { ($0.deviceID, $0.id) }, uniquingKeysWith: { a, _ in a })
        var sequences: [ProductID: [FirmwareVersion: Int64]] = [:]
        for known in try await store.firmwareList(product: nil) { sequences[known.product, default: [:]][known.version] = known.sequence }
        return ReleasePlanner.plan(
            release: release, firmware: firmware, devices: devices, activeJobs: active,
            sequenceOf: { sequences[$0]?[$1] })
    }

    /// The image a release would send is on disk and matches its digest: a missing or
    /// damaged file is refused now, not found by the first device to download it.
    public func checkImage(of firmware: Firmware) throws {
        let images = FirmwareImageCache(store: try FileImageStore(directory: configuration.imagesDirectory), capacityBytes: 0)
        do {
            _ = try images.image(sha256: firmware.sha256)
        } catch let error as UpdraftError {
            throw UpdraftError(error.code, "Firmware \(firmware.id): \(error.message)")
        }
    }

    /// Device ids that are not in the registry (never connected, never named).
    public func unknownDevices(_ ids: [DeviceID]) async throws -> [DeviceID] {
        var unknown: [DeviceID] = []
        for id in ids where try await store.device(id) == nil { unknown.append(id) }
        return unknown
    }

    /// Devices per job state for a release.
    public func releaseStatus(_ id: ReleaseID) async throws -> [Job] {
        try await store.jobs(release: id)
    }
}
