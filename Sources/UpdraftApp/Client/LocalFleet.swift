import Foundation
import UpdraftCore

/// The fleet commands on this machine's data directory, through `Operations` (events
/// record `cli:<os user>` as the actor).
public struct LocalFleet: FleetClient {
    public let ops: Operations

    public init(_ ops: Operations) { self.ops = ops }

    public var location: String { ops.configuration.dataDirectory }

    public func firmwareList(product: ProductID?) async throws -> [FirmwareView] {
        var rows: [FirmwareView] = []
        for fw in try await ops.store.firmwareList(product: product) { rows.append(FirmwareView(fw, try await ops.verification(of: fw.id))) }
        return rows
    }

    public func firmware(_ id: FirmwareID) async throws -> FirmwareView {
        let fw = try await ops.firmware(id)
        return FirmwareView(fw, try await ops.verification(of: fw.id))
    }

    public func addFirmware(file: String, signing: FirmwareSigning, progress: @escaping @Sendable (Int64, Int64) -> Void)
        async throws -> (firmware: FirmwareView, existing: Bool)
    {
        let result: FirmwareAddResult
        switch signing {
        case .here(let product, let version): result = try await ops.addFirmware(file: file, product: product, version: version)
        case .signed(let manifest, let signature): result = try await ops.addSignedFirmware(file: file, manifest: manifest, signature: signature)
        }
        let view = FirmwareView(result.firmware, try await ops.verification(of: result.firmware.id))
        if case .existing = result { return (view, true) }
        return (view, false)
    }

    public func verifyFirmware(_ id: FirmwareID, devices: [DeviceID]) async throws -> CreatedRelease {
        CreatedRelease(try await ops.verifyFirmware(id, devices: devices))
    }

    public func deleteFirmware(_ id: FirmwareID) async throws -> FirmwareView {
        FirmwareView(try await ops.deleteFirmware(id), FirmwareVerification(firmwareID: id))
    }

    public func createRelease(_ order: ReleaseOrder) async throws -> CreatedRelease {
        CreatedRelease(try await ops.createRelease(order, naming: .commandLine))
    }

    public func releases() async throws -> [ReleaseRow] {
        var rows: [ReleaseRow] = []
        for release in try await ops.store.fleetReleases() {
            rows.append(
                ReleaseRow(
                    release: release.id.rawValue, firmware: release.firmware.id.rawValue, kind: release.kind.rawValue,
                    target: release.target.summary, phase: "\(describe(release.rollout.phase)), stage \(release.rollout.stagePercent)%",
                    createdAt: release.createdAt))
        }
        let fleetIDs = Set(rows.map(\.release))
        for release in try await ops.store.releases() where !fleetIDs.contains(release.id.rawValue) {
            let view = ReleaseReport.oneOffView(release, try await ops.releaseStatus(release.id))
            rows.append(
                ReleaseRow(
                    release: release.id.rawValue, firmware: release.firmwareID.rawValue, kind: "one-off",
                    target: release.target.summary, phase: view.phaseDetail, createdAt: release.createdAt))
        }
        return rows.sorted { ($0.createdAt, $0.release) > ($1.createdAt, $1.release) }
    }

    public func releaseReport(_ id: ReleaseID) async throws -> ReleaseReport { try await ops.releaseReport(id) }

    public func rollout(_ command: RolloutStateMachine.Command, release: ReleaseID) async throws -> RolloutResult {
        RolloutResult(try await ops.rollout(command, release: release), command)
    }

    public func events(after: Int64, limit: Int) async throws -> [EventLine] {
        try await ops.store.events(after: after, limit: limit).map { EventLine(sequence: $0.sequence, json: $0.jsonLine()) }
    }

    public func followEvents(after: Int64, _ body: @Sendable (EventLine) async throws -> Void) async throws {
        try await pollEvents(after: after, body)
    }

    public func tokens() async throws -> [TokenRow] { try await ops.tokens().map(TokenRow.init) }
}
