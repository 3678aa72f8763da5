import Foundation
import Testing
import UpdraftCore

/// Several trusted release keys (rotation): the manifest's `key_id` picks the key.
@Suite struct TrustedReleaseKeysTests {
    let old = ReleaseSigningKey()
    let new = ReleaseSigningKey()

    func manifest(signedBy key: ReleaseSigningKey, keyID: String? = nil, sequence: Int64 = 3) -> Manifest {
        var manifest = Manifest(
            product: "thermo", version: "2.0", sequence: sequence, size: 10, sha256: String(repeating: "cd", count: 32),
            created: Date(timeIntervalSince1970: 1_700_000_000), keyID: key.publicKey.keyID)
        manifest.keyID = keyID ?? key.publicKey.keyID
        return manifest
    }

    @Test func keyIDsAreShortStableAndDistinct() throws {
        let again = try ReleaseVerifyingKey(rawRepresentation: old.publicKey.rawRepresentation)
        #expect(old.publicKey.keyID.count == 16)
        #expect(old.publicKey.keyID.allSatisfy { $0.isHexDigit })
        #expect(again.keyID == old.publicKey.keyID)
        #expect(old.publicKey.keyID != new.publicKey.keyID)
        let keys = TrustedReleaseKeys([old.publicKey, new.publicKey, again])
        #expect(keys.keyIDs == [old.publicKey.keyID, new.publicKey.keyID], "each key once, in order")
    }

    @Test func manifestsOfEitherTrustedKeyVerify() throws {
        let keys = TrustedReleaseKeys([old.publicKey, new.publicKey])
        for key in [old, new] {
            let signed = try key.sign(manifest(signedBy: key))
            #expect(try keys.verify(signed).keyID == key.publicKey.keyID)
        }
    }

    @Test func anUntrustedKeyIDIsRefusedByName() throws {
        let stranger = ReleaseSigningKey()
        let signed = try stranger.sign(manifest(signedBy: stranger))
        do {
            _ = try TrustedReleaseKeys([old.publicKey, new.publicKey]).verify(signed)
            Issue.record("a manifest of an untrusted key verified")
        } catch {
            #expect(error.code == "manifest_key_untrusted")
            #expect(error.message.contains(stranger.publicKey.keyID))
            #expect(error.message.contains(old.publicKey.keyID))
        }
    }

    @Test func aManifestClaimingATrustedKeyIDButSignedByAnotherFails() throws {
        // The attacker names a trusted key in key_id and signs with their own.
        let stranger = ReleaseSigningKey()
        let signed = try stranger.sign(manifest(signedBy: stranger, keyID: old.publicKey.keyID))
        do {
            _ = try TrustedReleaseKeys([old.publicKey]).verify(signed)
            Issue.record("a manifest signed by another key verified")
        } catch {
            #expect(error.code == "manifest_signature")
        }
    }

    @Test func manifestsWithoutKeyIDStillVerifyAgainstAnyTrustedKey() throws {
        var legacy = manifest(signedBy: old)
        legacy.keyID = nil
        let signed = try old.sign(legacy)
        #expect(!String(decoding: signed.payload, as: UTF8.self).contains("key_id"))
        let verified = try TrustedReleaseKeys([new.publicKey, old.publicKey]).verify(signed)
        #expect(verified.keyID == nil)
        #expect(verified.sequence == 3)
        do {
            _ = try TrustedReleaseKeys([new.publicKey]).verify(signed)
            Issue.record("a legacy manifest verified with a key that did not sign it")
        } catch {
            #expect(error.code == "manifest_signature")
        }
    }
}
