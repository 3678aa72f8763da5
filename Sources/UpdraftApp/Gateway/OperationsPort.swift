import Foundation
import UpdraftCore
import UpdraftHTTP

/// The HTTP API's changes, carried out by the same ``Operations`` the CLI runs, each as
/// done by the calling token (``Operations/acting(as:)``). The running gateway picks them
/// up from the event log, as it does the CLI's.
public struct OperationsPort: OperatorPort {
    let operations: Operations

    public init(_ operations: Operations) { self.operations = operations }

    public var uploadDirectory: String { operations.configuration.imagesDirectory + "/uploads" }
    public var maxImageBytes: Int64 { operations.configuration.maxImageBytes }

    public func addFirmware(_ upload: FirmwareUpload, by actor: ActorName) async throws -> FirmwareAddResult {
        let ops = operations.acting(as: actor)
        switch upload.signing {
        case .here(let product, let version):
            return try await ops.addFirmware(file: upload.path, product: product, version: version)
        case .signed(let manifest, let signature):
            return try await ops.addSignedFirmware(file: upload.path, manifest: manifest, signature: signature)
        }
    }

    public func verification(of firmware: FirmwareID) async throws -> FirmwareVerification {
        try await operations.verification(of: firmware)
    }

    public func verifyFirmware(_ id: FirmwareID, devices: [DeviceID], by actor: ActorName) async throws -> FleetRelease {
        try await operations.acting(as: actor).verifyFirmware(id, devices: devices)
    }

    public func deleteFirmware(_ id: FirmwareID, by actor: ActorName) async throws -> Firmware {
        try await operations.acting(as: actor).deleteFirmware(id)
    }

    public func createRelease(_ order: ReleaseOrder, by actor: ActorName) async throws -> ReleaseOrderOutcome {
        try await operations.acting(as: actor).createRelease(order, naming: .json)
    }

    public func releaseReport(_ id: ReleaseID) async throws -> ReleaseReport {
        try await operations.releaseReport(id)
    }

    public func rollout(_ command: RolloutStateMachine.Command, release: ReleaseID, by actor: ActorName) async throws -> RolloutOutcome {
        try await operations.acting(as: actor).rollout(command, release: release)
    }
}

/// Devices and jobs: the calls of `updraft device lock|unlock|group|dev|decommission`
/// and `updraft job cancel`.
extension OperationsPort {
    public func lock(_ device: DeviceID, to firmware: FirmwareID, delivery: LockDelivery, by actor: ActorName) async throws -> DeviceFleetProfile {
        try await operations.acting(as: actor).lock(device, to: firmware, delivery: delivery)
    }

    public func unlock(_ device: DeviceID, by actor: ActorName) async throws -> FirmwareLock? {
        try await operations.acting(as: actor).unlock(device)
    }

    public func setGroups(_ device: DeviceID, add: [GroupID], remove: [GroupID], by actor: ActorName) async throws -> DeviceFleetProfile {
        try await operations.acting(as: actor).setGroups(device, add: add, remove: remove)
    }

    public func setDevelopment(_ device: DeviceID, _ on: Bool, by actor: ActorName) async throws -> DeviceFleetProfile {
        try await operations.acting(as: actor).setDevelopment(device, on)
    }

    public func decommission(_ device: DeviceID, by actor: ActorName) async throws -> DecommissionResult {
        let done = try await operations.acting(as: actor).decommissionDevice(device)
        let revocation = done.revocation
        return DecommissionResult(
            device: device, canceledJob: done.canceledJob.flatMap { JobID(rawValue: $0) }, mqtt: revocation.mqtt, coap: revocation.coap,
            certificate: revocation.certificate, alreadyRevoked: revocation.alreadyRevoked)
    }

    public func cancelJob(_ id: JobID, by actor: ActorName) async throws -> Job {
        try await operations.acting(as: actor).cancelJob(id)
    }
}
