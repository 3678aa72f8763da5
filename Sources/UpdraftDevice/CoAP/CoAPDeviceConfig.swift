import Foundation
import UpdraftCore

/// Everything one CoAP device needs: who it is, what it runs, where the gateway's CoAP
/// endpoint is, the key it trusts, and the block size it downloads with.
public struct CoAPDeviceConfig: Sendable {
    public var id: DeviceID
    public var product: ProductID
    /// The version running at start, unless the storage directory records a later install.
    public var version: FirmwareVersion
    /// Manifest sequence of `version`, when known; anti-rollback compares offers against it.
    public var installedSequence: Int64?

    public var host: String = "127.0.0.1"
    /// `coap://` port, or the `coaps://` port when `psk` is set.
    public var port: Int = 5683
    /// DTLS pre-shared key; the device id is the PSK identity. `nil`: plain CoAP, the
    /// device names itself with `?d=<id>` (the gateway must allow unauthenticated devices).
    public var psk: [UInt8]?

    /// The release public key: manifests not signed by its private half are refused.
    public var releaseKey: ReleaseVerifyingKey

    /// Block2 size asked for: 16, 32, ..., 1024 bytes.
    public var blockSize: Int = 1024
    /// Time one request (one block of the image) may take; libcoap retransmits within it.
    public var requestTimeout: Duration = .seconds(60)
    /// `downloading` progress goes out at each 10 % step, but not more often than this.
    public var progressInterval: Duration = .milliseconds(500)
    /// Wait before trying again after the gateway could not be reached or refused.
    public var retryDelay: Duration = .seconds(1)
    /// Block requests in a row that fail (timeout, refusal, wrong ETag) before the job is reported `failed`/`download`.
    public var maxRetries: Int = 5
    /// Extra downloads after a digest mismatch before reporting `failed`/`verify`.
    public var maxVerifyRetries: Int = 2
    /// Offers for larger images are refused.
    public var maxImageBytes: Int64 = 64 << 20

    /// Time "rebooting" between the install and announcing the new version.
    public var rebootDelay: Duration = .milliseconds(500)
    /// Sent in the announce: how long the device may stay silent before the gateway takes
    /// it for offline; the device announces again every half of it. `nil`: the gateway's
    /// default (`coap.default_lifetime`), and no announce between boots.
    public var lifetime: Duration?
    /// `false`: the device announces it is busy.
    public var acceptsUpdates: Bool = true
    /// `true` accepts manifests whose sequence is not above the installed one.
    public var allowRollback: Bool = false

    /// Keeps the installed image and its version (and the download in progress) across restarts.
    public var storageDirectory: URL?
    /// Without a storage directory, keep the installed image in memory (`installedImage`).
    public var retainInstalledImage: Bool = true

    // Fault injection, for the simulator and tests.

    /// Flip one byte of the first downloaded image, to exercise verify and re-download.
    public var corruptFirstDownload: Bool = false
    /// Reboot once when the first download has run this long without finishing. With a
    /// storage directory the blocks in so far are kept and the download resumes from the
    /// first missing block (ETag checked); without one it starts again from block 0.
    public var rebootDuringFirstDownloadAfter: Duration?

    public init(
        id: DeviceID, product: ProductID, version: FirmwareVersion, releaseKey: ReleaseVerifyingKey,
        host: String = "127.0.0.1", port: Int = 5683
    ) {
        self.id = id
        self.product = product
        self.version = version
        self.releaseKey = releaseKey
        self.host = host
        self.port = port
    }
}
