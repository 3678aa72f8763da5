import Foundation
import Logging
import LoopbackPorts
import ServiceLifecycle
import Synchronization
import UpdraftCore
import UpdraftStore
import UpdraftTestSupport

@testable import UpdraftHTTP

/// An `HTTPServer` on a free loopback port over a SQLite store in a temporary folder,
/// with one token per scope, a real client, and a gateway probe the test controls.
struct APIServer {
    let store: SQLiteStatusStore
    let client: HTTPTestClient
    let group: ServiceGroup
    let port: Int
    /// Secrets by scope.
    let tokens: [TokenScope: String]
    let revoked: String
    /// What the gateway notifies at each commit (event streams wake on it).
    var signal = EventSignal()

    static let logger: Logger = {
        var logger = Logger(label: "updraft.http.test")
        logger.logLevel = ProcessInfo.processInfo.environment["UPDRAFT_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
        return logger
    }()

    /// Runs `body` against a started server, then shuts it down gracefully and removes the folder.
    static func with(
        readiness: @escaping @Sendable () async -> [ReadinessCheck] = { [ReadinessCheck("gateway", ok: true)] },
        metrics: @escaping @Sendable () async -> GatewayMetricsSnapshot = { GatewayMetricsSnapshot() },
        tune: (inout HTTPSettings) -> Void = { _ in }, trusting certificate: String? = nil, eventsRecheck: Duration = .seconds(1),
        downloads: (any DeviceDownloads)? = nil, _ body: (APIServer) async throws -> Void
    ) async throws {
        try await withTemporaryPath(prefix: "updraft-http") { directory in
            let store = try SQLiteStatusStore(path: directory + "/updraft.sqlite", logger: logger)
            var tokens: [TokenScope: String] = [:]
            for scope in TokenScope.allCases {
                let secret = TokenSecret.generate()
                try await store.createToken(AccessToken(name: try TokenName(validating: "t-\(scope.rawValue)"), scope: scope, secretSHA256: secret.sha256, createdAt: Date()))
                tokens[scope] = secret.value
            }
            let revoked = TokenSecret.generate()
            try await store.createToken(AccessToken(name: "gone", scope: .admin, secretSHA256: revoked.sha256, createdAt: Date()))
            try await store.revokeToken("gone", at: Date())

            var settings = HTTPSettings()
            settings.port = PortProbe.freePort()
            settings.shutdownTimeout = .seconds(5)
            tune(&settings)
            let listening = Atomic<Bool>(false)
            let signal = EventSignal()
            var backend = HTTPBackend(
                store: store, readiness: readiness, metrics: metrics, eventSignal: signal, eventsKeepAlive: settings.sseKeepAlive)
            backend.eventsRecheck = eventsRecheck
            backend.downloads = downloads
            let server = HTTPServer(
                settings: settings, backend: backend, logger: logger,
                onRunning: { _ in listening.store(true, ordering: .releasing) })
            let group = ServiceGroup(services: [server], logger: logger)
            let task = Task { try await group.run() }
            var api = APIServer(
                store: store, client: HTTPTestClient(port: settings.port, trusting: certificate), group: group, port: settings.port, tokens: tokens,
                revoked: revoked.value)
            api.signal = signal
            do {
                try await eventually(timeout: .seconds(10), "the HTTP server listens") { listening.load(ordering: .acquiring) }
                try await body(api)
            } catch {
                await api.stop(task)
                throw error
            }
            await api.stop(task)
        }
    }

    func stop(_ task: Task<Void, any Error>) async {
        await client.shutdown()
        await group.triggerGracefulShutdown()
        _ = await task.result
    }

    func get(_ path: String, _ scope: TokenScope? = nil) async throws -> HTTPTestResponse {
        try await client.get(path, token: scope.map { tokens[$0]! })
    }
}
