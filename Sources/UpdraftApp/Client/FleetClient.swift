import Foundation
import UpdraftCore
import UpdraftHTTP

/// What the CLI's commands read and change, wherever the gateway is: ``LocalFleet`` works
/// on the data directory through `Operations` (as the CLI always did), ``RemoteFleet`` on a
/// gateway's HTTP API (`--server URL --token T`) through the client generated from
/// openapi.yaml. A command written against this runs both ways and prints the same.
public protocol FleetClient: WebhookClient {
    /// Where the work happens, for messages: the data directory, or the server's URL.
    var location: String { get }

    func firmwareList(product: ProductID?) async throws -> [FirmwareView]
    func firmware(_ id: FirmwareID) async throws -> FirmwareView
    /// Adds an image; `existing` when the same product, version and content was there.
    /// `progress` is told the bytes sent so far (remote uploads).
    func addFirmware(file: String, signing: FirmwareSigning, progress: @escaping @Sendable (Int64, Int64) -> Void)
        async throws -> (firmware: FirmwareView, existing: Bool)
    func verifyFirmware(_ id: FirmwareID, devices: [DeviceID]) async throws -> CreatedRelease
    func deleteFirmware(_ id: FirmwareID) async throws -> FirmwareView

    func createRelease(_ order: ReleaseOrder) async throws -> CreatedRelease
    func releases() async throws -> [ReleaseRow]
    func releaseReport(_ id: ReleaseID) async throws -> ReleaseReport
    func rollout(_ command: RolloutStateMachine.Command, release: ReleaseID) async throws -> RolloutResult

    /// Events after `after`, oldest first, at most `limit`: each as its JSON line.
    func events(after: Int64, limit: Int) async throws -> [EventLine]
    /// Every event after `after`, then each new one as it is committed; returns only on error.
    func followEvents(after: Int64, _ body: @Sendable (EventLine) async throws -> Void) async throws

    func tokens() async throws -> [TokenRow]

    func devices(_ query: DeviceQuery) async throws -> [DeviceView]
    /// With should_run, active_job and the last `history` events.
    func device(_ id: DeviceID, history: Int) async throws -> DeviceView
    /// Returns the firmware it is locked to now.
    func lock(_ id: DeviceID, to firmware: FirmwareID, atNextSession: Bool, allowUnknown: Bool) async throws -> String
    /// Returns the firmware it was locked to.
    func unlock(_ id: DeviceID) async throws -> String?
    /// Returns its groups now.
    func setGroups(_ id: DeviceID, add: [GroupID], remove: [GroupID]) async throws -> [String]
    func setDevelopment(_ id: DeviceID, _ on: Bool) async throws
    func decommission(_ id: DeviceID) async throws -> Operations.Decommission
    func job(_ id: JobID) async throws -> JobView
    func cancelJob(_ id: JobID) async throws -> JobView
    func versionStats(product: ProductID?, top: Int) async throws -> [VersionStatsRow]
}

/// How an added image's manifest is signed: here with the release key (product and
/// version), or elsewhere (`updraft firmware sign`: manifest and signature).
public typealias FirmwareSigning = FirmwareUpload.Signing

/// One event of the log as `updraft events` prints it.
public struct EventLine: Sendable, Equatable {
    public var sequence: Int64
    public var json: String
    public init(sequence: Int64, json: String) { (self.sequence, self.json) = (sequence, json) }
}

extension FleetClient {
    /// Polls `events(after:limit:)`: the local store has no push.
    public func pollEvents(after: Int64, _ body: @Sendable (EventLine) async throws -> Void) async throws {
        var cursor = after
        while true {
            let page = try await events(after: cursor, limit: 1000)
            for event in page {
                try await body(event)
                cursor = event.sequence
            }
            if page.count < 1000 { try await Task.sleep(for: .milliseconds(200)) }
        }
    }
}
