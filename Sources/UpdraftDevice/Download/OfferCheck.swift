import UpdraftCore
import UpdraftWire

/// The checks a device makes before it downloads a byte: the manifest is signed by the
/// release key, is for this product, describes exactly the offered image, and moves
/// forward (anti-rollback). A refusal becomes a `failed`/`rejected` report.
struct OfferCheck: Sendable {
    var releaseKey: ReleaseVerifyingKey
    var product: ProductID
    /// Manifest sequence of the installed firmware; `nil` when unknown (first boot).
    var installedSequence: Int64?
    var allowRollback: Bool
    var maxImageBytes: Int64

    func verify(_ offer: JobOffer) throws(UpdraftError) -> Manifest {
        guard let signed = offer.signedManifest else {
            throw UpdraftError("manifest_encoding", "The offer's manifest or signature is not base64.")
        }
        let manifest = try releaseKey.verify(signed)
        guard manifest.product == product else {
            throw UpdraftError("wrong_product", "The firmware is for product \(manifest.product); this device is \(product).")
        }
        guard manifest.version == offer.version, manifest.size == offer.size,
            manifest.sha256.lowercased() == offer.sha256.lowercased(), manifest.sequence == offer.sequence
        else {
            throw UpdraftError("offer_mismatch", "The offer's version, size, sha256 or sequence differ from the signed manifest.")
        }
        guard manifest.size > 0, manifest.size <= maxImageBytes else {
            throw UpdraftError("image_size", "The image is \(manifest.size) bytes; this device takes 1...\(maxImageBytes).")
        }
        if let installed = installedSequence, !allowRollback, manifest.sequence <= installed {
            throw UpdraftError(
                "rollback", "Manifest sequence \(manifest.sequence) is not above the installed firmware's \(installed); rollback refused.")
        }
        return manifest
    }
}
