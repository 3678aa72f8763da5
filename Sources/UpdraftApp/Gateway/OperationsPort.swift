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
