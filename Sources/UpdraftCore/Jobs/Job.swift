import Foundation

/// Where one device is on its way to one firmware.
public enum JobState: String, Sendable, Codable, CaseIterable {
    /// Created; waiting for the device (offline, busy, or not yet told).
    case queued
    /// The offer (with the signed manifest) was sent to the device.
    case notified
    case downloading
    case downloaded
    /// The device checked digest and signature.
    case verified
    case installing
    /// The device says the install finished; success waits for it to announce the target version.
    case installed
    case succeeded
    case failed
    case canceled

    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .canceled }
    public var isActive: Bool { !isTerminal }
}

/// Why a job failed. The first four come from devices; the rest from the gateway.
public enum FailureReason: String, Sendable, Codable, CaseIterable {
    case download
    case verify
    case install
    /// The device refused the offer (wrong product, bad signature, rollback, ...).
    case rejected
    case timeout
}

public struct Job: Sendable, Equatable, Codable {
    public var id: JobID
    public var releaseID: ReleaseID
    public var deviceID: DeviceID
    public var firmwareID: FirmwareID
    /// The version the device must announce for the job to succeed.
    public var targetVersion: FirmwareVersion
    public var state: JobState
    /// Download percent, 0...100.
    public var progress: Int
    public var failure: FailureReason?
    public var detail: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: JobID = .random(), releaseID: ReleaseID, deviceID: DeviceID, firmwareID: FirmwareID,
        targetVersion: FirmwareVersion, state: JobState = .queued, progress: Int = 0,
        failure: FailureReason? = nil, detail: String? = nil, createdAt: Date, updatedAt: Date? = nil
    ) {
        self.id = id
        self.releaseID = releaseID
        self.deviceID = deviceID
        self.firmwareID = firmwareID
        self.targetVersion = targetVersion
        self.state = state
        self.progress = progress
        self.failure = failure
        self.detail = detail
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }
}

/// A progress report from a device, decoded from any protocol.
public enum DeviceReport: Sendable, Equatable {
    case downloading(percent: Int)
    case downloaded
    case verified
    case installing
    /// The device finished installing (before its reboot).
    case installed
    case failed(FailureReason, detail: String?)
}
