import Foundation
import UpdraftCore

/// Makes the signed HTTP download URL an offer carries (`url`) when the gateway serves
/// firmware over HTTP: `<base>/v1/fw/<device>/<job>?exp=<unix seconds>&sig=<mac>`, valid
/// for ``lifetime`` from when the offer (or pending answer) is made. The engine knows
/// nothing of it: the adapters add it to what they send.
public struct DownloadLinks: Sendable {
    /// Where devices reach the HTTP server, without a trailing slash (`http.public_url`).
    public let baseURL: String
    public let signer: DownloadURLSigner
    public let lifetime: Duration
    private let now: @Sendable () -> Date

    public init(baseURL: String, signer: DownloadURLSigner, lifetime: Duration, now: @escaping @Sendable () -> Date = { Date() }) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        (self.baseURL, self.signer, self.lifetime, self.now) = (base, signer, lifetime, now)
    }

    /// The URL for a device's job and the job's firmware.
    public func url(device: DeviceID, job: JobID, firmware: Firmware) -> String {
        let expires = Int64(now().timeIntervalSince1970.rounded(.down)) + lifetime.components.seconds
        let signature = signer.signature(device: device, job: job, sha256: firmware.sha256, expires: expires)
        return baseURL + DownloadGrant(device: device, job: job, expires: expires, signature: signature).pathAndQuery
    }
}
