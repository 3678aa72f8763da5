public import UpdraftCore

/// The changes the API makes, handed in by the composition root: UpdraftApp implements
/// it over `Operations`, the same operations the CLI runs, so both check and record a
/// change alike. Each call names the caller (the token) as the events' `actor`.
public protocol OperatorPort: Sendable {
    /// Where uploads are streamed to before they join the catalog (on the image store's
    /// file system), and the size past which an upload is refused (`firmware.max_image_bytes`).
    var uploadDirectory: String { get }
    var maxImageBytes: Int64 { get }

    func addFirmware(_ upload: FirmwareUpload, by actor: ActorName) async throws -> FirmwareAddResult
    func verification(of firmware: FirmwareID) async throws -> FirmwareVerification
    func verifyFirmware(_ id: FirmwareID, devices: [DeviceID], by actor: ActorName) async throws -> FleetRelease
    func deleteFirmware(_ id: FirmwareID, by actor: ActorName) async throws -> Firmware

    func createRelease(_ order: ReleaseOrder, by actor: ActorName) async throws -> ReleaseOrderOutcome
    func releaseReport(_ id: ReleaseID) async throws -> ReleaseReport
    func rollout(_ command: RolloutStateMachine.Command, release: ReleaseID, by actor: ActorName) async throws -> RolloutOutcome

    // Devices and jobs (DeviceHandlers, JobHandlers): `updraft device ...`, `updraft job cancel`.
    func lock(_ device: DeviceID, to firmware: FirmwareID, delivery: LockDelivery, by actor: ActorName) async throws -> DeviceFleetProfile
    /// The lock removed (`not_locked` when there was none).
    func unlock(_ device: DeviceID, by actor: ActorName) async throws -> FirmwareLock?
    func setGroups(_ device: DeviceID, add: [GroupID], remove: [GroupID], by actor: ActorName) async throws -> DeviceFleetProfile
    func setDevelopment(_ device: DeviceID, _ on: Bool, by actor: ActorName) async throws -> DeviceFleetProfile
    func decommission(_ device: DeviceID, by actor: ActorName) async throws -> DecommissionResult
    func cancelJob(_ id: JobID, by actor: ActorName) async throws -> Job
}

/// What decommissioning a device did (`updraft device decommission --json`).
public struct DecommissionResult: Sendable, Equatable {
    public var device: DeviceID
    public var canceledJob: JobID?
    public var mqtt, coap, certificate, alreadyRevoked: Bool

    public init(device: DeviceID, canceledJob: JobID?, mqtt: Bool, coap: Bool, certificate: Bool, alreadyRevoked: Bool) {
        (self.device, self.canceledJob) = (device, canceledJob)
        (self.mqtt, self.coap, self.certificate, self.alreadyRevoked) = (mqtt, coap, certificate, alreadyRevoked)
    }
}

/// An image streamed to `path`, with what `firmware add` needs beside it: product and
/// version (signed by the gateway), or a manifest and signature made elsewhere.
public struct FirmwareUpload: Sendable {
    public enum Signing: Sendable {
        case here(product: String, version: String)
        case signed(manifest: [UInt8], signature: [UInt8])
    }

    public var path: String
    public var signing: Signing

    public init(path: String, signing: Signing) {
        (self.path, self.signing) = (path, signing)
    }
}

extension ActorName {
    /// The actor of a call made with `token`: `token:NAME`.
    public static func token(_ token: AccessToken) -> ActorName { ActorName("token:\(token.name.rawValue)") }
}
