import Foundation
import Mosquitto
import UpdraftCore

/// Everything one device needs: who it is, what it runs, where the broker is, the key it
/// trusts, and how it downloads. Defaults suit a broker on localhost.
public struct DeviceConfig: Sendable {
    /// Also the MQTT client id and username.
    public var id: DeviceID
    public var product: ProductID
    /// The version running at start, unless the storage directory records a later install.
    public var version: FirmwareVersion
    /// Manifest sequence of `version`, when known; anti-rollback compares offers against it.
    public var installedSequence: Int64?
    public var password: String?

    public var brokerHost: String = "127.0.0.1"
    public var brokerPort: Int = 1883
    public var tls: MosquittoOptions.TLSOptions?
    public var topicsPrefix: String = "updraft"
    /// Reconnect backoff after a lost connection.
    public var reconnect = ReconnectPolicy(initialDelay: .milliseconds(200), maxDelay: .seconds(5))

    /// The release public key: manifests not signed by its private half are refused.
    public var releaseKey: ReleaseVerifyingKey

    /// Bytes per chunk; `nil` takes the gateway's preferred size. Clamped to the offer's limits.
    public var chunkSize: Int?
    /// Chunks asked for in one download request; capped by the offer's `max_count`.
    public var windowCount: Int = 16
    /// A window with no new chunk for this long is asked again from its first missing chunk.
    public var requestTimeout: Duration = .seconds(2)
    /// First delay before asking again after the gateway refused a download request; grows linearly.
    public var retryDelay: Duration = .seconds(1)
    /// Refused download requests in a row before the job is reported `failed`/`download`.
    public var maxRetries: Int = 5
    /// Extra downloads from 0 after a digest mismatch before reporting `failed`/`verify`.
    public var maxVerifyRetries: Int = 2
    /// `downloading` progress goes out at each 10 % step, but not more often than this: on a
    /// fast link ten reports a second would cost the gateway more than they tell anyone.
    public var progressInterval: Duration = .milliseconds(500)
    /// Offers for larger images are refused.
    public var maxImageBytes: Int64 = 64 << 20

    /// Time "rebooting" between the install and announcing the new version.
    public var rebootDelay: Duration = .milliseconds(500)
    /// `false`: the device announces it is busy; offers that still arrive are ignored.
    public var acceptsUpdates: Bool = true
    /// `true` accepts manifests whose sequence is not above the installed one.
    public var allowRollback: Bool = false

    /// Keeps partial downloads, the installed image and its version across restarts.
    /// `nil`: everything stays in memory.
    public var storageDirectory: URL?
    /// Without a storage directory, keep the installed image in memory (`installedImage`).
    /// A simulated fleet turns this off to save memory.
    public var retainInstalledImage: Bool = true

    // Fault injection, for the simulator and tests.

    /// Flip one byte of one chunk during the first download, to exercise verify and re-download.
    public var corruptFirstDownload: Bool = false
    /// Drop the connection (no DISCONNECT, so the will fires) once when the first download
    /// passes this percent, to exercise resume.
    public var dropConnectionAtPercent: Int?

    public init(
        id: DeviceID, product: ProductID, version: FirmwareVersion, releaseKey: ReleaseVerifyingKey,
        brokerHost: String = "127.0.0.1", brokerPort: Int = 1883
    ) {
        self.id = id
        self.product = product
        self.version = version
        self.releaseKey = releaseKey
        self.brokerHost = brokerHost
        self.brokerPort = brokerPort
    }
}
