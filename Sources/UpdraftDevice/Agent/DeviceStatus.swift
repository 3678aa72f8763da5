import UpdraftCore

/// Where a device is in its update, as an operator would see it on the device.
public enum DeviceStatus: Sendable, Hashable, CustomStringConvertible {
    case idle
    case downloading(percent: Int)
    case verifying
    case installing
    case rebooting
    /// Rebooted into this version after an update.
    case updated(FirmwareVersion)
    /// The last job ended on the device with this reason.
    case failed(FailureReason)

    /// The status without its value, to count a fleet by.
    public enum Phase: String, Sendable, Hashable, CaseIterable {
        case idle, downloading, verifying, installing, rebooting, updated, failed
    }

    public var phase: Phase {
        switch self {
        case .idle: .idle
        case .downloading: .downloading
        case .verifying: .verifying
        case .installing: .installing
        case .rebooting: .rebooting
        case .updated: .updated
        case .failed: .failed
        }
    }

    public var description: String {
        switch self {
        case .downloading(let percent): "downloading(\(percent)%)"
        case .updated(let version): "updated(\(version))"
        case .failed(let reason): "failed(\(reason.rawValue))"
        default: phase.rawValue
        }
    }
}

/// A consistent picture of one device, readable from any thread.
public struct DeviceState: Sendable, Equatable {
    public var status: DeviceStatus = .idle
    /// The version running now.
    public var version: FirmwareVersion
    /// Manifest sequence of the running version, when known.
    public var installedSequence: Int64?
    /// Connected to the broker and announced.
    public var online: Bool = false
    /// The job being downloaded or installed.
    public var job: JobID?
    /// Image bytes accepted over the device's lifetime (chunks counted once per download attempt).
    public var bytesReceived: Int = 0
    /// Times a download continued from a non-zero offset after a reconnect or a process restart.
    public var resumes: Int = 0
    /// Windows asked again because no chunk came for `requestTimeout` (lost chunks, busy gateway).
    public var stalls: Int = 0
    /// Images that failed the digest check and were downloaded again.
    public var verifyRetries: Int = 0
    /// Offers ignored: unreadable, or their manifest not signed by a trusted key or not
    /// matching the offer (forged or altered by whoever could write the job topic).
    public var ignoredOffers: Int = 0
    /// Connections made, including reconnects after drops and reboots.
    public var connections: Int = 0
}
