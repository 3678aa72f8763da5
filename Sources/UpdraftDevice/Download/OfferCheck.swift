import UpdraftCore
import UpdraftWire

/// The checks a device makes before it downloads a byte, in two steps. ``authentic(_:)``:
/// the manifest is signed by a trusted release key and describes exactly the offered
/// image; an offer that fails it may come from anyone able to write the job topic, so the
/// device ignores it (and counts it) rather than answering for a job it cannot trust.
/// ``acceptable(_:)``: the genuine manifest is for this product, fits, and moves forward
/// (anti-rollback); a refusal there becomes a `failed`/`rejected` report.
package struct OfferCheck: Sendable {
    package var trustedKeys: TrustedReleaseKeys
    package var product: ProductID
    /// Manifest sequence of the installed firmware; `nil` when unknown (first boot).
    package var installedSequence: Int64?
    package var allowRollback: Bool
    package var maxImageBytes: Int64

    package init(trustedKeys: TrustedReleaseKeys, product: ProductID, installedSequence: Int64?, allowRollback: Bool, maxImageBytes: Int64) {
        (self.trustedKeys, self.product, self.installedSequence) = (trustedKeys, product, installedSequence)
        (self.allowRollback, self.maxImageBytes) = (allowRollback, maxImageBytes)
    }

    /// The manifest, when the offer carries one signed by a trusted key and matches it.
    package func authentic(_ offer: JobOffer) throws(UpdraftError) -> Manifest {
        guard let signed = offer.signedManifest else {
            throw UpdraftError("manifest_encoding", "The offer's manifest or signature is not base64.")
        }
        let manifest = try trustedKeys.verify(signed)
        guard manifest.version == offer.version, manifest.size == offer.size,
            manifest.sha256.lowercased() == offer.sha256.lowercased(), manifest.sequence == offer.sequence
        else {
            throw UpdraftError("offer_mismatch", "The offer's version, size, sha256 or sequence differ from the signed manifest.")
        }
        return manifest
    }

    /// Throws why this device refuses a genuine manifest.
    package func acceptable(_ manifest: Manifest) throws(UpdraftError) {
        guard manifest.product == product else {
            throw UpdraftError("wrong_product", "The firmware is for product \(manifest.product); this device is \(product).")
        }
        guard manifest.size > 0, manifest.size <= maxImageBytes else {
            throw UpdraftError("image_size", "The image is \(manifest.size) bytes; this device takes 1...\(maxImageBytes).")
        }
        if let installed = installedSequence, !allowRollback, manifest.sequence <= installed {
            throw UpdraftError(
                "rollback", "Manifest sequence \(manifest.sequence) is not above the installed firmware's \(installed); rollback refused.")
        }
    }
}
