import Testing
import UpdraftCore

/// The download URL's signature covers device, job, image digest and expiry; any change,
/// another key or a malformed signature fails it.
@Suite struct DownloadURLSignerTests {
    let sha = String(repeating: "ab", count: 32)

    @Test func aSignatureChecksOnlyForWhatItSigned() throws {
        let signer = try DownloadURLSigner(key: DownloadURLSigner.generateKey())
        let sig = signer.signature(device: "dev-1", job: "j1", sha256: sha, expires: 1000)
        #expect(sig.utf8.count == 43 && !sig.contains("=") && !sig.contains("+") && !sig.contains("/"))
        #expect(signer.isValid(sig, device: "dev-1", job: "j1", sha256: sha, expires: 1000))
        #expect(signer.isValid(sig, device: "dev-1", job: "j1", sha256: sha.uppercased(), expires: 1000))
        #expect(!signer.isValid(sig, device: "dev-2", job: "j1", sha256: sha, expires: 1000))
        #expect(!signer.isValid(sig, device: "dev-1", job: "j2", sha256: sha, expires: 1000))
        #expect(!signer.isValid(sig, device: "dev-1", job: "j1", sha256: String(repeating: "cd", count: 32), expires: 1000))
        #expect(!signer.isValid(sig, device: "dev-1", job: "j1", sha256: sha, expires: 1001))
        let other = try DownloadURLSigner(key: DownloadURLSigner.generateKey())
        #expect(!other.isValid(sig, device: "dev-1", job: "j1", sha256: sha, expires: 1000))
        for bad in ["", "x", String(sig.dropLast()), sig + "A", String(repeating: "é", count: 43), String(repeating: "!", count: 43)] {
            #expect(!signer.isValid(bad, device: "dev-1", job: "j1", sha256: sha, expires: 1000), "\(bad)")
        }
        #expect(throws: UpdraftError.self) { try DownloadURLSigner(key: [1, 2, 3]) }
    }

    /// The last character of 43 carries two unused bits: the three other spellings that
    /// decode to the same bytes are refused (a URL altered there is not the URL signed).
    @Test func onlyTheCanonicalSpellingOfASignatureIsTaken() throws {
        let signer = try DownloadURLSigner(key: DownloadURLSigner.generateKey())
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for expires in Int64(1000)..<1020 {
            let sig = signer.signature(device: "dev-1", job: "j1", sha256: sha, expires: expires)
            let index = alphabet.firstIndex(of: sig.last!)!
            for low in 1..<4 {
                let twin = String(sig.dropLast()) + String(alphabet[(index & ~3) | ((index + low) & 3)])
                #expect(!signer.isValid(twin, device: "dev-1", job: "j1", sha256: sha, expires: expires), "\(twin)")
            }
        }
    }

    @Test func theGrantPathNamesDeviceJobExpiryAndSignature() {
        let grant = DownloadGrant(device: "dev-1", job: "j1", expires: 42, signature: "abc")
        #expect(grant.pathAndQuery == "/v1/fw/dev-1/j1?exp=42&sig=abc")
    }
}
