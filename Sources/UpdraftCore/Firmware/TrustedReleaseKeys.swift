import Foundation

/// The release public keys a party trusts: the gateway before it takes a signed manifest
/// into its catalog, a device before it installs. Several during a key rotation; a
/// manifest names its key with `key_id`, and one without `key_id` (made before key ids
/// were checked) verifies if any trusted key signed it.
public struct TrustedReleaseKeys: Sendable, Equatable {
    /// In the order given, each key once.
    public private(set) var keys: [ReleaseVerifyingKey] = []

    public init(_ keys: [ReleaseVerifyingKey]) {
        for key in keys where !self.keys.contains(key) { self.keys.append(key) }
    }

    public init(_ key: ReleaseVerifyingKey) { self.init([key]) }

    public var keyIDs: [String] { keys.map(\.keyID) }

    public func key(id: String) -> ReleaseVerifyingKey? { keys.first { $0.keyID == id } }

    /// Checks the signature with the key the manifest names, then decodes. Throws
    /// `UpdraftError` with code `manifest_key_untrusted`, `manifest_signature` or `manifest_malformed`.
    public func verify(_ signed: SignedManifest) throws(UpdraftError) -> Manifest {
        let trusted = keyIDs.isEmpty ? "none" : keyIDs.joined(separator: ", ")
        if let claimed = Self.claimedKeyID(signed.payload) {
            guard let key = key(id: claimed) else {
                throw UpdraftError(
                    "manifest_key_untrusted",
                    "The manifest is signed with key \(claimed), which is not trusted here (trusted: \(trusted)). Add that key's public half to the trusted keys, or sign with a trusted key.")
            }
            return try key.verify(signed)
        }
        guard let key = keys.first(where: { $0.isValidSignature(signed) }) else {
            throw UpdraftError("manifest_signature", "The manifest signature does not verify with any trusted key (trusted: \(trusted)).")
        }
        return try key.verify(signed)
    }

    /// The `key_id` the (not yet verified) payload claims, if it has one.
    static func claimedKeyID(_ payload: [UInt8]) -> String? {
        struct Claim: Decodable {
            var key_id: String?
        }
        return (try? JSONDecoder().decode(Claim.self, from: Data(payload)))?.key_id
    }
}
