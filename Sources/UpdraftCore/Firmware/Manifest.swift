import Crypto
import Foundation

/// The statement a device verifies before it installs anything: which image, for which
/// product, in which order. Signed by the operator's release key; the gateway relays it
/// unchanged and never needs the private key at run time.
public struct Manifest: Sendable, Equatable, Codable {
    public var format: Int
    public var product: ProductID
    public var version: FirmwareVersion
    public var sequence: Int64
    public var size: Int64
    public var sha256: String
    /// Seconds since 1970-01-01T00:00:00Z.
    public var created: Int64
    /// Names the signing key (``ReleaseVerifyingKey/keyID``); absent in manifests signed
    /// before key ids were checked, which verify against every trusted key.
    public var keyID: String?

    public init(
        product: ProductID, version: FirmwareVersion, sequence: Int64, size: Int64, sha256: String,
        created: Date, keyID: String
    ) {
        self.format = 1
        self.product = product
        self.version = version
        self.sequence = sequence
        self.size = size
        self.sha256 = sha256
        self.created = Int64(created.timeIntervalSince1970.rounded(.down))
        self.keyID = keyID
    }

    enum CodingKeys: String, CodingKey {
        case format, product, version, sequence, size, sha256, created
        case keyID = "key_id"
    }

    /// The exact bytes that are signed: compact JSON with sorted keys.
    public func canonicalBytes() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a struct of strings and integers cannot fail.
        return Array(try! encoder.encode(self))
    }
}

/// Manifest bytes plus an Ed25519 signature over exactly those bytes.
public struct SignedManifest: Sendable, Equatable, Codable {
    public var payload: [UInt8]
    public var signature: [UInt8]

    public init(payload: [UInt8], signature: [UInt8]) {
        self.payload = payload
        self.signature = signature
    }

    public var payloadBase64: String { Data(payload).base64EncodedString() }
    public var signatureBase64: String { Data(signature).base64EncodedString() }
}

/// An Ed25519 release key pair.
public struct ReleaseSigningKey: Sendable {
    let key: Curve25519.Signing.PrivateKey

    public init() { key = Curve25519.Signing.PrivateKey() }

    public init(rawRepresentation: [UInt8]) throws(UpdraftError) {
        do {
            key = try Curve25519.Signing.PrivateKey(rawRepresentation: rawRepresentation)
        } catch {
            throw UpdraftError("invalid_signing_key", "The release signing key is not a 32-byte Ed25519 private key. Make a new one with `updraft keys generate`.")
        }
    }

    public var rawRepresentation: [UInt8] { Array(key.rawRepresentation) }
    public var publicKey: ReleaseVerifyingKey { ReleaseVerifyingKey(key: key.publicKey) }

    public func sign(_ manifest: Manifest) throws -> SignedManifest {
        let payload = manifest.canonicalBytes()
        let signature = try key.signature(for: payload)
        return SignedManifest(payload: payload, signature: Array(signature))
    }
}

/// The public half, which devices hold to verify manifests.
public struct ReleaseVerifyingKey: Sendable, Equatable {
    let key: Curve25519.Signing.PublicKey

    init(key: Curve25519.Signing.PublicKey) { self.key = key }

    public init(rawRepresentation: [UInt8]) throws(UpdraftError) {
        do {
            key = try Curve25519.Signing.PublicKey(rawRepresentation: rawRepresentation)
        } catch {
            throw UpdraftError("invalid_public_key", "The release public key is not a 32-byte Ed25519 public key.")
        }
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.rawRepresentation == rhs.rawRepresentation }

    public func isValidSignature(_ signed: SignedManifest) -> Bool { key.isValidSignature(signed.signature, for: signed.payload) }

    public var rawRepresentation: [UInt8] { Array(key.rawRepresentation) }

    /// First 8 bytes of the SHA-256 of the raw public key, in hex: names the key in manifests.
    public var keyID: String { Digest.hex(SHA256.hash(data: rawRepresentation)).prefix(16).description }

    /// Checks the signature, then decodes. Throws `UpdraftError` with code `manifest_signature` or `manifest_malformed`.
    public func verify(_ signed: SignedManifest) throws(UpdraftError) -> Manifest {
        guard isValidSignature(signed) else {
            throw UpdraftError("manifest_signature", "The manifest signature does not verify with key \(keyID).")
        }
        do {
            return try JSONDecoder().decode(Manifest.self, from: Data(signed.payload))
        } catch {
            throw UpdraftError("manifest_malformed", "The signed manifest is not a valid manifest: \(error).")
        }
    }
}

/// Hex helpers for digests.
public enum Digest {
    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        var out = ""
        out.reserveCapacity(64)
        for byte in digest { out += String(byte, radix: 16).leftPadded(to: 2) }
        return out
    }

    public static func sha256Hex(_ bytes: some DataProtocol) -> String { hex(SHA256.hash(data: bytes)) }
}
