import UpdraftCore

/// What every reference device does with a complete image, whatever protocol carried it:
/// check it against the signed manifest's digest, then write it (storage directory) or
/// keep it (memory). The offer itself is checked before by ``OfferCheck``.
struct ImageInstaller: Sendable {
    var storage: DeviceStorage?
    /// Without storage, keep the installed image in memory.
    var retainImage: Bool

    /// `nil` when `image` is the one the manifest describes; else its actual digest.
    static func digestMismatch(_ image: [UInt8], _ manifest: Manifest) -> String? {
        let digest = Digest.sha256Hex(image)
        return digest == manifest.sha256.lowercased() ? nil : digest
    }

    /// Writes the image and its version; returns what to keep in memory as the installed image.
    func install(_ image: [UInt8], _ manifest: Manifest) throws -> [UInt8]? {
        if let storage {
            try storage.install(image, as: .init(version: manifest.version, sequence: manifest.sequence, sha256: manifest.sha256))
            storage.discardPartial()
            return nil
        }
        return retainImage ? image : nil
    }
}
