import Foundation
import Testing
@testable import UpdraftCore

@Suite struct ManifestTests {
    let manifest = Manifest(
        product: "thermo", version: "1.2.0", sequence: 7, size: 1024,
        sha256: String(repeating: "ab", count: 32), created: Date(timeIntervalSince1970: 1_700_000_000.9), keyID: "k")

    @Test func signedManifestVerifiesAndRoundTrips() throws {
        let key = ReleaseSigningKey()
        let signed = try key.sign(manifest)
        let decoded = try key.publicKey.verify(signed)
        #expect(decoded == manifest)
        #expect(signed.signature.count == 64)
    }

    @Test func canonicalBytesAreStableSortedJSON() {
        let text = String(decoding: manifest.canonicalBytes(), as: UTF8.self)
        #expect(text == #"{"created":1700000000,"format":1,"key_id":"k","product":"thermo","sequence":7,"sha256":"\#(String(repeating: "ab", count: 32))","size":1024,"version":"1.2.0"}"#)
        #expect(manifest.canonicalBytes() == manifest.canonicalBytes())
    }

    @Test func tamperedPayloadOrOtherKeyFailsVerification() throws {
        let key = ReleaseSigningKey()
        var signed = try key.sign(manifest)
        signed.payload[10] ^= 0x01
        #expect(throws: UpdraftError.self) { try key.publicKey.verify(signed) }
        let other = ReleaseSigningKey()
        let good = try key.sign(manifest)
        do {
            _ = try other.publicKey.verify(good)
            Issue.record("verified with the wrong key")
        } catch {
            #expect(error.code == "manifest_signature")
        }
    }

    @Test func keysRoundTripThroughRawBytes() throws {
        let key = ReleaseSigningKey()
        let again = try ReleaseSigningKey(rawRepresentation: key.rawRepresentation)
        #expect(again.publicKey == key.publicKey)
        #expect(key.publicKey.keyID.count == 16)
        #expect(throws: UpdraftError.self) { try ReleaseSigningKey(rawRepresentation: [1, 2, 3]) }
    }

    @Test(arguments: ["1.0.0", "v2_beta-3", String(repeating: "9", count: 64)])
    func validVersions(_ text: String) throws {
        #expect(try FirmwareVersion(validating: text).rawValue == text)
    }

    @Test(arguments: ["", "1.0 beta", "a/b", "x+", "#", String(repeating: "9", count: 65), "é"])
    func invalidVersionsAreRefusedWithTheRule(_ text: String) {
        do {
            _ = try FirmwareVersion(validating: text)
            Issue.record("accepted '\(text)'")
        } catch {
            #expect(error.code == "invalid_version")
            #expect(error.message.contains("1-64"))
        }
    }

    @Test func firmwareLimits() {
        let limits = FirmwareLimits(maxImageBytes: 100)
        #expect(throws: UpdraftError("firmware_empty", "The firmware file is empty. Check the path; an image has at least one byte.")) { try limits.check(size: 0) }
        #expect(throws: UpdraftError.self) { try limits.check(size: 101) }
        #expect(throws: Never.self) { try limits.check(size: 100) }
    }
}
