import Foundation
import UpdraftCore

/// Everything one CoAP device needs: who it is, what it runs, where the gateway's CoAP
/// endpoint is and the block size it downloads with; what every reference device shares
/// is in ``behavior`` and reads as if it were here.
public struct CoAPDeviceConfig: ReferenceDeviceConfig {
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
    public var behavior: DeviceBehavior

    /// Block2 size asked for: 16, 32, ..., 1024 bytes.
    public var blockSize: Int = 1024
    /// Time one request (one block of the image) may take; libcoap retransmits within it.
    public var requestTimeout: Duration = .seconds(60)

    /// Sent in the announce: how long the device may stay silent before the gateway takes
    /// it for offline; the device announces again every half of it. `nil`: the gateway's
    /// default (`coap.default_lifetime`), and no announce between boots.
    public var lifetime: Duration?

    // Fault injection, for the simulator and tests.

    /// Reboot once when the first download has run this long without finishing. With a
    /// storage directory the blocks in so far are kept and the download resumes from the
    /// first missing block (ETag checked); without one it starts again from block 0.
    public var rebootDuringFirstDownloadAfter: Duration?

    public init(
        id: DeviceID, product: ProductID, version: FirmwareVersion, trustedKeys: TrustedReleaseKeys,
        host: String = "127.0.0.1", port: Int = 5683
    ) {
        self.id = id
        self.product = product
        self.version = version
        self.behavior = DeviceBehavior(trustedKeys: trustedKeys)
        self.host = host
        self.port = port
    }
}
