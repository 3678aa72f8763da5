import Foundation
import UpdraftCore

/// What every reference device does the same way, whatever protocol it speaks: the keys it
/// trusts, how it retries, verifies, reports and installs, and the faults it can inject.
/// ``DeviceConfig`` (MQTT) and ``CoAPDeviceConfig`` hold one each and forward its fields
/// (`config.maxRetries` is `config.behavior.maxRetries`).
public struct DeviceBehavior: Sendable {
    /// The release public keys: offers whose manifest none of them signed are ignored.
    /// Several while a key rotates (the protocol article says how).
    public var trustedKeys: TrustedReleaseKeys
    /// First delay before asking again after the gateway refused or lost a download
    /// request (MQTT: grows linearly), and before booting again after it was unreachable.
    public var retryDelay: Duration = .seconds(1)
    /// Download requests in a row that are refused or lost before the job is reported
    /// `failed`/`download`.
    public var maxRetries: Int = 5
    /// Extra downloads after a digest mismatch before reporting `failed`/`verify`.
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
    /// Puts a boot counter (`boot`) in every announcement, as the protocol recommends.
    /// `false` behaves like a device built before it: the gateway then has only the MQTT
    /// retain flag to tell a replayed announcement from a new one.
    public var announcesBoot: Bool = true

    /// Keeps partial downloads, the installed image and its version across restarts.
    /// `nil`: everything stays in memory.
    public var storageDirectory: URL?
    /// Without a storage directory, keep the installed image in memory (`installedImage`).
    /// A simulated fleet turns this off to save memory.
    public var retainInstalledImage: Bool = true

    /// Download the image over HTTP by the offer's signed `url` (Range resume after an
    /// interrupted transfer) when the offer has one; else by chunks (MQTT) or blocks (CoAP).
    public var downloadsOverHTTP: Bool = false

    /// Fault injection: flip one byte of the first downloaded image, to exercise verify
    /// and re-download.
    public var corruptFirstDownload: Bool = false

    public init(trustedKeys: TrustedReleaseKeys) {
        self.trustedKeys = trustedKeys
    }
}

/// A reference device's configuration: reads and writes ``DeviceBehavior``'s fields as its
/// own (`config.maxRetries` is `config.behavior.maxRetries`).
@dynamicMemberLookup
public protocol ReferenceDeviceConfig: Sendable {
    var id: DeviceID { get }
    var product: ProductID { get }
    /// The version running at start, unless the storage directory records a later install.
    var version: FirmwareVersion { get }
    /// Manifest sequence of `version`, when known; anti-rollback compares offers against it.
    var installedSequence: Int64? { get set }
    var behavior: DeviceBehavior { get set }
}

extension ReferenceDeviceConfig {
    public subscript<T>(dynamicMember keyPath: WritableKeyPath<DeviceBehavior, T>) -> T {
        get { behavior[keyPath: keyPath] }
        set { behavior[keyPath: keyPath] = newValue }
    }
}
