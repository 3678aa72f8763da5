import AsyncHTTPClient
import Foundation
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime
import UpdraftCore
import UpdraftHTTP

/// The fleet commands against a gateway's HTTP API (`--server URL --token T`), through the
/// client generated from openapi.yaml: the document and this client cannot drift. Errors
/// come back as the same one-line ``UpdraftError``s the local commands print
/// (``RemoteProblemMiddleware``); the token's name is the events' actor.
public struct RemoteFleet: FleetClient {
    public let server: URL
    let client: UpdraftHTTP.Client
    /// For the event stream and uploads: no overall deadline.
    let longClient: UpdraftHTTP.Client

    public init(server: String, token: String) throws {
        guard let url = URL(string: server), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw UpdraftError(
                "invalid_server", "--server '\(server)' is not an http:// or https:// URL; give the gateway's API address, like http://127.0.0.1:8080.")
        }
        guard !token.isEmpty else {
            throw UpdraftError(
                "token_missing",
                "--server needs a token: pass --token T or set UPDRAFT_TOKEN (make one on the gateway host with `updraft token create NAME --scope operate`).")
        }
        self.server = url
        let middlewares: [any ClientMiddleware] = [RemoteProblemMiddleware(token: token, server: server)]
        client = UpdraftHTTP.Client(
            serverURL: url, transport: AsyncHTTPClientTransport(configuration: .init(client: Self.http, timeout: .seconds(60))),
            middlewares: middlewares)
        longClient = UpdraftHTTP.Client(
            serverURL: url, transport: AsyncHTTPClientTransport(configuration: .init(client: Self.http, timeout: .hours(24 * 365))),
            middlewares: middlewares)
    }

    /// One client for the process (never shut down: the CLI exits). Connecting fails fast,
    /// so a gateway that is down is told at once, not after retries.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5)))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    public var location: String { server.absoluteString }

    public func firmwareList(product: ProductID?) async throws -> [FirmwareView] {
        let list = try await call { try await client.listFirmware(query: .init(product: product?.rawValue)).ok.body.json.firmware }
        var rows: [FirmwareView] = []
        for fw in list { rows.append(try await firmware(try FirmwareID(validating: fw.id))) }
        return rows
    }

    public func firmware(_ id: FirmwareID) async throws -> FirmwareView {
        let detail = try await call { try await client.getFirmware(path: .init(id: id.rawValue)).ok.body.json }
        var view = FirmwareView(detail.firmware, verification: detail.verification)
        view.verificationRelease = detail.verificationRelease
        return view
    }

    public func verifyFirmware(_ id: FirmwareID, devices: [DeviceID]) async throws -> CreatedRelease {
        let created = try await call {
            try await client.verifyFirmware(path: .init(id: id.rawValue), body: .json(.init(devices: devices.map(\.rawValue)))).created.body.json
        }
        return CreatedRelease(created)
    }

    public func deleteFirmware(_ id: FirmwareID) async throws -> FirmwareView {
        let fw = try await call { try await client.deleteFirmware(path: .init(id: id.rawValue)).ok.body.json }
        return FirmwareView(fw, verification: VerificationStatus.unverified.rawValue)
    }

    public func createRelease(_ order: ReleaseOrder) async throws -> CreatedRelease {
        CreatedRelease(try await call { try await client.createRelease(body: .json(.init(order))).created.body.json })
    }

    public func releases() async throws -> [ReleaseRow] {
        let list = try await call { try await client.listReleases().ok.body.json.releases }
        var rows: [ReleaseRow] = []
        for release in list {
            // The list has no phase: each release's report (one device row) tells it.
            let report = try await call { try await client.getRelease(path: .init(id: release.id), query: .init(limit: 1)).ok.body.json }
            let phase = release.kind == "one-off" ? report.phaseDetail : "\(report.phaseDetail), stage \(report.stagePercent)%"
            rows.append(
                ReleaseRow(
                    release: release.id, firmware: release.firmware, kind: release.kind, target: release.target, phase: phase,
                    createdAt: release.createdAt))
        }
        return rows
    }

    public func releaseReport(_ id: ReleaseID) async throws -> ReleaseReport {
        var cursor: String?
        var devices: [ReleaseReport.DeviceRow] = []
        while true {
            let detail = try await call { try await client.getRelease(path: .init(id: id.rawValue), query: .init(cursor: cursor, limit: 1000)).ok.body.json }
            var report = try ReleaseReport(detail)
            devices += report.devices
            guard let next = detail.nextCursor else {
                report.devices = devices
                return report
            }
            cursor = next
        }
    }

    public func rollout(_ command: RolloutStateMachine.Command, release: ReleaseID) async throws -> RolloutResult {
        let path = UpdraftHTTP.Operations.PauseRelease.Input.Path(id: release.rawValue)
        let result = try await call {
            switch command {
            case .pause: try await client.pauseRelease(path: path).ok.body.json
            case .resume: try await client.resumeRelease(path: .init(id: release.rawValue)).ok.body.json
            case .advance: try await client.advanceRelease(path: .init(id: release.rawValue)).ok.body.json
            case .cancel: try await client.cancelRelease(path: .init(id: release.rawValue)).ok.body.json
            }
        }
        return RolloutResult(changed: result.changed, summary: result.summary, canceledJobs: result.canceledJobs)
    }

    public func tokens() async throws -> [TokenRow] {
        try await call { try await client.listTokens().ok.body.json.tokens }.map {
            TokenRow(name: $0.name, scope: $0.scope.rawValue, createdAt: $0.createdAt, revokedAt: $0.revokedAt)
        }
    }
}

extension FirmwareView {
    init(_ fw: Components.Schemas.Firmware, verification: String) {
        self.init(
            id: fw.id, product: fw.product, version: fw.version, sequence: fw.sequence, size: fw.size, sha256: fw.sha256, createdAt: fw.createdAt,
            verification: verification)
    }
}

extension CreatedRelease {
    init(_ created: Components.Schemas.ReleaseCreated) {
        self.init(release: created.release, kind: created.kind)
        jobs = created.jobs
        skipped = (created.skipped ?? []).map { ($0.device, $0.reason) }
        unknownDevices = created.unknownDevices ?? []
        devices = created.devices
    }
}

extension ReleaseReport {
    /// The API's release detail has the report's fields and names (and `next_cursor`).
    init(_ detail: Components.Schemas.ReleaseDetail) throws {
        self = try convert(detail)
    }
}

extension Components.Schemas.ReleaseCreate {
    /// The order as the API's body (the inverse of UpdraftHTTP's `ReleaseOrder(body)`).
    init(_ order: ReleaseOrder) {
        self.init(firmware: order.firmware.rawValue)
        switch order.target {
        case .devices(let ids): devices = ids.map(\.rawValue)
        case .groups(let ids): groups = ids.map(\.rawValue)
        case .product(let id): product = id.rawValue
        }
        (fleet, force, allowDowngrade, allowUnknown) = (order.fleet, order.force, order.allowDowngrade, order.allowUnknown)
        (selectGroup, selectDevices) = (order.selectGroups?.map(\.rawValue), order.selectDevices?.map(\.rawValue))
        (percent, sourceVersions) = (order.percent, order.sourceVersions?.map(\.rawValue))
        membership = order.membership.flatMap { .init(rawValue: $0.rawValue) }
        delivery = order.delivery.flatMap { .init(rawValue: $0.rawValue) }
        onError = order.onError.flatMap { .init(rawValue: $0.rawValue) }
        (startAt, retryInterval, maxRetries, deviceTimeout) = (order.startAt, order.retryInterval, order.maxRetries, order.deviceTimeout)
        (rate, stages, minStageDuration) = (order.rate, order.stages, order.minStageDuration)
        (successThreshold, errorThreshold) = (order.successThreshold, order.errorThreshold)
    }
}
