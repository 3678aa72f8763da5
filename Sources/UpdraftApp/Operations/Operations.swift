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
    /// Who asks: every event an operation records names it (``UpdraftEvent/actor``).
    public private(set) var actor: ActorName

    /// - Parameter access: `.existing` for commands that work on recorded data: a
    ///   mistyped data directory is then an error, not a fresh empty store.
    /// - Parameter actor: who asks; the local CLI's user by default. A server shares one
    ///   `Operations` and names each caller with ``acting(as:)``.
    public init(
        configuration: UpdraftConfiguration, access: UpdraftStoreFactory.Access = .create, actor: ActorName = .localCLI(),
        logger: Logger
    ) throws {
        if access == .existing {
            try DataDirectory.requireExisting(configuration.dataDirectory)
        } else {
            try DataDirectory.create(configuration.dataDirectory)
        }
        self.configuration = configuration
        self.logger = logger
        self.actor = actor
        self.store = try UpdraftStoreFactory.open(configuration, access: access, logger: logger)
    }

    /// Operations over a store already open (the running gateway's, for the HTTP API).
    public init(configuration: UpdraftConfiguration, store: any StatusStore, actor: ActorName, logger: Logger) {
        (self.configuration, self.store, self.actor, self.logger) = (configuration, store, actor, logger)
    }

    /// The same operations, recorded as done by `actor`.
    public func acting(as actor: ActorName) -> Operations {
        var copy = self
        copy.actor = actor
        return copy
    }

    // MARK: Keys

    public var keyFiles: ReleaseKeyFiles { ReleaseKeyFiles(configuration) }

    /// Makes a new Ed25519 release key pair; refuses to overwrite unless `force`.
    public func generateKeys(force: Bool) throws -> (privatePath: String, publicPath: String, keyID: String) {
        try keyFiles.generate(force: force)
    }

    public func signingKey() throws -> ReleaseSigningKey { try keyFiles.signingKey() }

    public func publicKey() throws -> ReleaseVerifyingKey { try signingKey().publicKey }

    /// The release public keys the gateway takes signed manifests from (see ``ReleaseKeyFiles``).
    public func trustedKeys() throws -> TrustedReleaseKeys { try keyFiles.trustedKeys() }

    // MARK: Firmware

    /// Adds an image to the catalog: content-addressed file, digests, and a manifest
    /// signed here with the local release key (the all-in-one path).
    public func addFirmware(file: String, product: String, version: String) async throws -> FirmwareAddResult {
        let productID = try ProductID(validating: product)
        let versionID = try FirmwareVersion(validating: version)
        let image = try FirmwareImageFile(path: file, maxImageBytes: configuration.maxImageBytes)
        let key = try signingKey()
        try FileImageStore(directory: configuration.imagesDirectory).put(image.bytes, sha256: image.sha256)
        let now = Date()
        return try await store.addFirmware(product: productID, version: versionID, sha256: image.sha256, actor: actor.name) { sequence in
            let manifest = image.manifest(product: productID, version: versionID, sequence: sequence, created: now, keyID: key.publicKey.keyID)
            return image.firmware(manifest, signed: try key.sign(manifest), createdAt: now)
        }
    }

    /// Adds an image with a manifest signed elsewhere (`updraft firmware sign`): the
    /// signature must verify with a trusted public key and the manifest must describe
    /// exactly this image. No private key is needed here.
    public func addSignedFirmware(file: String, manifest payload: [UInt8], signature: [UInt8]) async throws -> FirmwareAddResult {
        let signed = SignedManifest(payload: payload, signature: signature)
        let manifest = try trustedKeys().verify(signed)
        let image = try FirmwareImageFile(path: file, maxImageBytes: configuration.maxImageBytes)
        guard Int64(image.bytes.count) == manifest.size, image.sha256 == manifest.sha256.lowercased() else {
            throw UpdraftError(
                "manifest_image_mismatch",
                "The manifest describes \(manifest.size) bytes with sha256 \(manifest.sha256.prefix(16))…, but the image is \(image.bytes.count) bytes with sha256 \(image.sha256.prefix(16))…. Pass the image that was signed.")
        }
        try FileImageStore(directory: configuration.imagesDirectory).put(image.bytes, sha256: image.sha256)
        let created = Date(timeIntervalSince1970: TimeInterval(manifest.created))
        return try await store.addFirmware(product: manifest.product, version: manifest.version, sha256: image.sha256, actor: actor.name) { next in
            guard manifest.sequence >= next else {
                throw UpdraftError(
                    "manifest_sequence",
                    "The manifest's sequence \(manifest.sequence) is not above \(manifest.product)'s latest (\(next - 1)); devices would refuse it as a rollback. Sign it again with --sequence \(next) or higher.")
            }
            return image.firmware(manifest, signed: signed, createdAt: created)
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
        try await refuseRevoked(in: target)
        let release = Release(firmwareID: firmware.id, target: target, allowDowngrade: allowDowngrade, createdAt: Date())
        // Planned on a snapshot first: a refused plan stores nothing. The store plans
        // again inside its transaction, against the fleet as it is then.
        if let refusal = try await preview(release, firmware).refusal(allowUnknown: allowUnknown) { throw refusal }
        return try await store.createRelease(release, firmware: firmware, actor: actor.name)
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
