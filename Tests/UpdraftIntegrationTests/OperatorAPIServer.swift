import Foundation
import LoopbackPorts
import Synchronization
import UpdraftApp
import UpdraftCore
import UpdraftHTTP
import UpdraftTestSupport

/// The HTTP API with its changes carried out by the real `Operations` over a SQLite store
/// in a temporary data directory (what `updraft serve` wires up, without the broker): a
/// server on a free loopback port, a real client, one token per scope.
struct OperatorAPIServer {
    let ops: UpdraftApp.Operations
    let client: HTTPTestClient
    let directory: String
    /// Secrets by scope (tokens named t-read, t-operate, t-admin).
    let tokens: [TokenScope: String]
    static let maxImageBytes: Int64 = 64 * 1024

    static func with(_ body: (OperatorAPIServer) async throws -> Void) async throws {
        try await withTemporaryPath(prefix: "updraft-opapi") { directory in
            var configuration = UpdraftConfiguration()
            configuration.dataDirectory = directory
            configuration.maxImageBytes = maxImageBytes
            let ops = try UpdraftApp.Operations(configuration: configuration, logger: Harness.logger)
            _ = try ops.generateKeys(force: false)
            var tokens: [TokenScope: String] = [:]
            for scope in TokenScope.allCases {
                tokens[scope] = try await ops.createToken(name: "t-\(scope.rawValue)", scope: scope.rawValue).secret.value
            }
            var settings = HTTPSettings()
            settings.port = PortProbe.freePort()
            let listening = Atomic<Bool>(false)
            let backend = HTTPBackend(
                store: ops.store, readiness: { [] }, metrics: { GatewayMetricsSnapshot() }, operations: OperationsPort(ops))
            let server = HTTPServer(
                settings: settings, backend: backend, logger: Harness.logger, onRunning: { _ in listening.store(true, ordering: .releasing) })
            let task = Task { try await server.run() }
            let api = OperatorAPIServer(ops: ops, client: HTTPTestClient(port: settings.port), directory: directory, tokens: tokens)
            // Stopped whether the body passed or threw; then its error, if any.
            var failure: (any Error)?
            do {
                try await eventually(timeout: .seconds(10), "the HTTP server listens") { listening.load(ordering: .acquiring) }
                try await body(api)
            } catch { failure = error }
            await api.stop(task)
            if let failure { throw failure }
        }
    }

    func stop(_ task: Task<Void, any Error>) async {
        await client.shutdown()
        task.cancel()
        _ = await task.result
    }

    func send(
        _ method: String, _ path: String, _ scope: TokenScope?, json: String? = nil, headers: [(String, String)] = []
    ) async throws -> HTTPTestResponse {
        let body = json.map { Array($0.utf8) }
        let extra = json == nil ? headers : [("Content-Type", "application/json")] + headers
        return try await client.send(method, path, token: scope.map { tokens[$0]! }, headers: extra, body: body)
    }

    /// `POST /v1/firmware?product=&version=` with `image` as the body.
    func upload(_ image: [UInt8], product: String, version: String, _ scope: TokenScope = .operate) async throws -> HTTPTestResponse {
        try await client.send(
            "POST", "/v1/firmware?product=\(product)&version=\(version)", token: tokens[scope]!,
            headers: [("Content-Type", "application/octet-stream")], body: image)
    }

    /// Devices as the gateway records them when they announce.
    func announce(_ ids: [String], product: String = "thermo", version: String = "1.0") async throws {
        try await ops.store.commit(
            StoreBatch(devices: try ids.map { Device(id: try DeviceID(validating: $0), product: try ProductID(validating: product), version: try FirmwareVersion(validating: version), online: false) }))
    }

    /// Devices on thermo 1.0 and `firmware` (thermo@version) in the catalog, uploaded by t-operate.
    func catalog(devices: [String], version: String, seed: UInt8) async throws {
        try await announce(devices)
        let added = try await upload(Self.image(1500, seed: seed), product: "thermo", version: version)
        guard added.status == 201 else { throw UpdraftError("test_setup", "upload: \(added.status) \(added.text)") }
    }

    static func image(_ size: Int, seed: UInt8) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) ^ seed } }
}
