import Foundation

/// Where a firmware stands on its way to the fleet (Alibaba's verification status).
public enum VerificationStatus: String, Sendable, Codable, CaseIterable {
    /// Uploaded; no device has run it yet.
    case unverified
    /// A verification release is putting it on test devices.
    case verifying
    /// At least one device installed it, rebooted and announced it.
    case verified
    /// Every test device failed it.
    case failed
}

/// The verification gate of one firmware: a firmware must run on at least one device
/// before it may be released to a fleet, so a broken build cannot brick a product at once.
///
/// A state machine in the style of the job machine: event methods change the status and
/// return what the caller must do (record it, create the verification release). The store
/// persists it as JSON, keyed by firmware id.
public struct FirmwareVerification: Sendable, Equatable, Codable {
    public let firmwareID: FirmwareID
    public private(set) var status: VerificationStatus
    /// The verification release in progress (or the last one).
    public private(set) var releaseID: ReleaseID?
    /// The test devices of the current verification.
    public private(set) var devices: [DeviceID]
    /// Devices that failed the current verification.
    public private(set) var failedDevices: [DeviceID]
    /// The first device that ran the firmware successfully.
    public private(set) var verifiedBy: DeviceID?
    public private(set) var updatedAt: Date?

    public init(firmwareID: FirmwareID) {
        self.firmwareID = firmwareID
        self.status = .unverified
        self.releaseID = nil
        self.devices = []
        self.failedDevices = []
        self.verifiedBy = nil
        self.updatedAt = nil
    }

    public enum Action: Sendable, Equatable {
        /// Create the verification release (kind ``FleetReleaseKind/verification``,
        /// target these devices) with this id.
        case createVerificationRelease(ReleaseID, devices: [DeviceID])
        /// Record the new status (and an event for it).
        case statusChanged(from: VerificationStatus, to: VerificationStatus)
    }

    /// `updraft firmware verify FW --devices ...`.
    public mutating func start(release: ReleaseID, devices: [DeviceID], at now: Date) throws(UpdraftError) -> Action {
        var seen = Set<DeviceID>()
        let devices = devices.filter { seen.insert($0).inserted }
        guard !devices.isEmpty else {
            throw UpdraftError(
                "verification_no_devices",
                "Name the test devices that should try \(firmwareID): `updraft firmware verify \(firmwareID) --devices ID[,ID...]`.")
        }
        switch status {
        case .verified:
            throw UpdraftError(
                "firmware_already_verified",
                "Firmware \(firmwareID) is already verified (by device \(verifiedBy?.rawValue ?? "?")); release it with `updraft release create \(firmwareID) ...`.")
        case .verifying:
            throw UpdraftError(
                "verification_in_progress",
                "Firmware \(firmwareID) is already being verified by release \(releaseID?.rawValue ?? "?") on \(self.devices.count) device(s). Wait for it, or cancel it with `updraft release cancel \(releaseID?.rawValue ?? "RELEASE")` and verify again.")
        case .unverified, .failed:
            releaseID = release
            self.devices = devices
            failedDevices = []
            status = .verifying
            updatedAt = now
            return .createVerificationRelease(release, devices: devices)
        }
    }

    /// A device installed this firmware and announced it (any job of any release, a lock
    /// included: running on one real device is the proof the gate asks for).
    public mutating func deviceSucceeded(_ device: DeviceID, at now: Date) -> Action? {
        guard status != .verified else { return nil }
        let previous = status
        status = .verified
        verifiedBy = device
        updatedAt = now
        return .statusChanged(from: previous, to: .verified)
    }

    /// A test device's job of the verification release failed for good (no retry left).
    /// The firmware fails verification when every test device has failed; failures of
    /// devices outside the verification say nothing and are ignored.
    public mutating func deviceFailed(_ device: DeviceID, at now: Date) -> Action? {
        guard status == .verifying, devices.contains(device), !failedDevices.contains(device) else { return nil }
        failedDevices.append(device)
        updatedAt = now
        guard failedDevices.count == devices.count else { return nil }
        status = .failed
        return .statusChanged(from: .verifying, to: .failed)
    }

    /// The verification release ended (completed, or aborted by its error threshold) and
    /// no device confirmed the firmware: it failed. Call this on the release's
    /// ``RolloutStateMachine/Change/completed`` or ``RolloutStateMachine/Change/aborted(failed:of:)``;
    /// it saves tracking which failures were final.
    public mutating func verificationReleaseEnded(at now: Date) -> Action? {
        guard status == .verifying else { return nil }
        status = .failed
        updatedAt = now
        return .statusChanged(from: .verifying, to: .failed)
    }

    /// The verification release was canceled: back to where it was before.
    public mutating func verificationCanceled(at now: Date) -> Action? {
        guard status == .verifying else { return nil }
        status = .unverified
        updatedAt = now
        return .statusChanged(from: .verifying, to: .unverified)
    }

    /// How a fleet release of this firmware may go ahead.
    public enum Authorization: Sendable, Equatable {
        case verified
        /// Not verified, released anyway: record the release as forced from this status.
        case forced(VerificationStatus)
    }

    /// The gate itself: refuses a fleet release of firmware that has not run on a device,
    /// unless forced. The error says how to get past it.
    public func authorizeFleetRelease(force: Bool) throws(UpdraftError) -> Authorization {
        if status == .verified { return .verified }
        if force { return .forced(status) }
        switch status {
        case .unverified:
            throw UpdraftError(
                "firmware_unverified",
                "Firmware \(firmwareID) has not run on any device yet. Run `updraft firmware verify \(firmwareID) --devices ID[,ID...]` first, or pass --force to release it unverified.")
        case .verifying:
            throw UpdraftError(
                "firmware_verifying",
                "Firmware \(firmwareID) is being verified (release \(releaseID?.rawValue ?? "?")) and no test device has confirmed it yet. Wait until `updraft firmware show \(firmwareID)` says verified, or pass --force.")
        case .failed:
            throw UpdraftError(
                "firmware_verification_failed",
                "Firmware \(firmwareID) failed verification on every test device (\(failedDevices.map(\.rawValue).joined(separator: ","))). Fix the build and add a new version, run `updraft firmware verify \(firmwareID) --devices ...` again, or pass --force.")
        case .verified:
            return .verified
        }
    }

    enum CodingKeys: String, CodingKey {
        case firmwareID = "firmware", status, releaseID = "release", devices, failedDevices = "failed_devices"
        case verifiedBy = "verified_by", updatedAt = "updated_at"
    }
}
