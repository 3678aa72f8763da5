import Foundation

/// A firmware image in the catalog. The image bytes live in a content-addressed blob
/// store under their SHA-256; this is the metadata and the signed manifest.
public struct Firmware: Sendable, Equatable, Codable {
    /// `product@version`: unique in the catalog and readable on a command line.
    public var id: FirmwareID { FirmwareID(product: product, version: version) }
    public var product: ProductID
    public var version: FirmwareVersion
    /// Monotonic per product: the order of versions, and the anti-rollback counter.
    public var sequence: Int64
    public var size: Int64
    public var sha256: String
    public var md5: String
    public var createdAt: Date
    public var manifest: SignedManifest

    public init(
        product: ProductID, version: FirmwareVersion, sequence: Int64, size: Int64, sha256: String, md5: String,
        createdAt: Date, manifest: SignedManifest
    ) {
        self.product = product
        self.version = version
        self.sequence = sequence
        self.size = size
        self.sha256 = sha256
        self.md5 = md5
        self.createdAt = createdAt
        self.manifest = manifest
    }
}

/// Limits applied when an operator adds firmware.
public struct FirmwareLimits: Sendable {
    public var maxImageBytes: Int64
    public init(maxImageBytes: Int64 = 64 << 20) { self.maxImageBytes = maxImageBytes }

    public func check(size: Int64) throws(UpdraftError) {
        if size == 0 {
            throw UpdraftError("firmware_empty", "The firmware file is empty. Check the path; an image has at least one byte.")
        }
        if size > maxImageBytes {
            throw UpdraftError(
                "firmware_too_large",
                "The firmware file is \(size) bytes, over the limit of \(maxImageBytes) bytes. Raise firmware.max_image_bytes in the configuration if this is intended."
            )
        }
    }
}
