import Crypto
import Foundation

/// Signs and checks the short-lived download URLs of HTTP firmware downloads
/// (`GET /v1/fw/<device>/<job>?exp=<unix seconds>&sig=<mac>`): an HMAC-SHA256, under a
/// key only the gateway holds, over the device, the job, the image's SHA-256 and the
/// expiry. Altering any of them (another device's path, another job, a later expiry)
/// makes the signature wrong; the image digest in it ties the URL to the bytes it serves.
///
/// Pure: no clock and no file. The key is made once per data directory by the app
/// (`<data_dir>/http/download-url.key`, 0600).
public struct DownloadURLSigner: Sendable {
    /// The key length made for a new data directory (256 bits).
    public static let keyBytes = 32
    private let key: SymmetricKey

    /// - Parameter key: at least 16 bytes of secret.
    public init(key: [UInt8]) throws(UpdraftError) {
        guard key.count >= 16 else {
            throw UpdraftError(
                "download_key_invalid",
                "The download URL key holds \(key.count) bytes; delete it (a new 32-byte key is made at the next start; old URLs stop working).")
        }
        self.key = SymmetricKey(data: key)
    }

    /// A new random key.
    public static func generateKey() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    /// The signature, in base64url without padding (43 characters).
    public func signature(device: DeviceID, job: JobID, sha256: String, expires: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Self.message(device, job, sha256, expires), using: key)
        return Self.base64url(Array(mac))
    }

    /// Whether `signature` is this key's signature of these values (compared in constant time).
    public func isValid(_ signature: String, device: DeviceID, job: JobID, sha256: String, expires: Int64) -> Bool {
        // Only the canonical spelling: the last of 43 characters carries 2 unused bits, and a
        // decoder that ignores them would take four spellings of one signature.
        guard signature.utf8.count == 43, let mac = Self.decodeBase64url(signature), mac.count == 32, Self.base64url(mac) == signature
        else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Self.message(device, job, sha256, expires), using: key)
    }

    /// Newline-separated: no identifier and no digest can hold a newline.
    static func message(_ device: DeviceID, _ job: JobID, _ sha256: String, _ expires: Int64) -> [UInt8] {
        Array("updraft-fw-v1\n\(device.rawValue)\n\(job.rawValue)\n\(sha256.lowercased())\n\(expires)".utf8)
    }

    static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decodeBase64url(_ text: String) -> [UInt8]? {
        guard text.utf8.allSatisfy({ $0 < 0x80 }) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map(Array.init)
    }
}

/// What a download URL says, as parsed from its path and query: the device and job in
/// the path, the expiry and signature in the query.
public struct DownloadGrant: Sendable, Equatable {
    public var device: DeviceID
    public var job: JobID
    public var expires: Int64
    public var signature: String

    public init(device: DeviceID, job: JobID, expires: Int64, signature: String) {
        (self.device, self.job, self.expires, self.signature) = (device, job, expires, signature)
    }

    /// The path and query of the URL: `/v1/fw/<device>/<job>?exp=<expires>&sig=<signature>`.
    public var pathAndQuery: String { "/v1/fw/\(device.rawValue)/\(job.rawValue)?exp=\(expires)&sig=\(signature)" }
}
