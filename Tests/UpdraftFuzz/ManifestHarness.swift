import Crypto
import Foundation
import UpdraftCore
import UpdraftDevice
import UpdraftWire

/// Input: a mode byte, then the bytes of that mode.
/// - 0: manifest bytes, signed here with the harness key, then verified as `firmware add
///   --manifest` does: what verifies decodes, names a trusted key (or none) and
///   round-trips through its canonical bytes.
/// - 1: a 64-byte signature then manifest bytes, verified against two trusted keys.
/// - 2: a job offer as a device receives it, decoded and checked (`OfferCheck`).
enum ManifestHarness {
    static let signing = try! Curve25519.Signing.PrivateKey(rawRepresentation: Array(1...32) as [UInt8])
    static let verifying = try! ReleaseVerifyingKey(rawRepresentation: Array(signing.publicKey.rawRepresentation))
    static let other = try! ReleaseVerifyingKey(
        rawRepresentation: Array(Curve25519.Signing.PrivateKey(rawRepresentation: Array(repeating: 7, count: 32) as [UInt8]).publicKey.rawRepresentation))
    static let trusted = TrustedReleaseKeys([other, verifying])
    static let verifyCodes: Set<String> = ["manifest_key_untrusted", "manifest_signature", "manifest_malformed"]

    static func run(_ input: [UInt8]) throws(FuzzFailure) {
        guard let mode = input.first else { return }
        let rest = Array(input.dropFirst())
        switch mode % 3 {
        case 0:
            guard let signature = try? signing.signature(for: rest) else { throw FuzzFailure("cannot sign") }
            try verify(SignedManifest(payload: rest, signature: Array(signature)))
        case 1:
            try verify(SignedManifest(payload: Array(rest.dropFirst(64)), signature: Array(rest.prefix(64))))
        default:
            try offer(rest)
        }
    }

    static func verify(_ signed: SignedManifest) throws(FuzzFailure) {
        let manifest: Manifest
        do throws(UpdraftError) {
            manifest = try trusted.verify(signed)
        } catch {
            try expectCode(error.code, in: verifyCodes, "verify")
            return
        }
        try expect(manifest.keyID == nil || trusted.keyIDs.contains(manifest.keyID!), "verified a manifest naming untrusted key \(manifest.keyID!)")
        let canonical = manifest.canonicalBytes()
        let again = try? JSONDecoder().decode(Manifest.self, from: Data(canonical))
        try expect(again == manifest, "manifest \(manifest) does not round-trip through its canonical bytes")
        try expect(again?.canonicalBytes() == canonical, "canonical bytes are not stable")
    }

    /// An offer a device takes is one whose signed manifest says what the offer says.
    static func offer(_ payload: [UInt8]) throws(FuzzFailure) {
        let check = OfferCheck(trustedKeys: trusted, product: "thermo", installedSequence: 3, allowRollback: false, maxImageBytes: 1 << 20)
        let offer: JobOffer
        let manifest: Manifest
        do throws(UpdraftError) {
            offer = try UpdraftDialectV1().decodeOffer(payload)
            manifest = try check.authentic(offer)
        } catch {
            try expectCode(error.code, in: verifyCodes.union(["malformed_offer", "manifest_encoding", "offer_mismatch"]), error.message)
            return
        }
        try expect(
            manifest.version == offer.version && manifest.size == offer.size && manifest.sequence == offer.sequence
                && manifest.sha256.lowercased() == offer.sha256.lowercased(), "authentic offer \(offer) differs from its manifest \(manifest)")
        switch Result(catching: { () throws(UpdraftError) in try check.acceptable(manifest) }) {
        case .success:
            try expect(manifest.product == "thermo" && manifest.sequence > 3 && (1...(1 << 20)).contains(manifest.size), "accepted \(manifest)")
        case .failure(let error):
            try expectCode(error.code, in: ["wrong_product", "image_size", "rollback"], error.message)
        }
    }
}
