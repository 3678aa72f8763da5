import Foundation
import LoopbackPorts
import ServiceLifecycle
import Synchronization
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftHTTP

/// The HTTP API through a real server and client: who may call what, what it answers,
/// and how it stops.
@Suite(.timeLimit(.minutes(2))) struct HTTPAPITests {
    /// Every operation of openapi.yaml with a path that reaches it (GET, no required input).
    static let readPaths = [
        "/readyz", "/metrics", "/openapi.yaml", "/v1/firmware", "/v1/devices", "/v1/devices/d-1", "/v1/releases",
        "/v1/events?after=0&limit=10", "/v1/stats/versions", "/v1/devices?online=true&state=idle",
    ]

    @Test func healthNeedsNoToken() async throws {
        try await APIServer.with { api in
            let health = try await api.get("/healthz")
            #expect(health.status == 200)
            #expect(health.text == "ok\n")
        }
    }

    /// Hostile twins of every read: no token, a forged one, a revoked one, the right
    /// secret under another scheme: 401 as problem+json, nothing of the resource.
    @Test func everyEndpointButHealthRefusesMissingBadAndRevokedTokens() async throws {
        try await APIServer.with { api in
            let forged = TokenSecret.generate().value
            let attempts: [(String, [(String, String)])] = [
                ("none", []), ("forged", [("Authorization", "Bearer \(forged)")]),
                ("revoked", [("Authorization", "Bearer \(api.revoked)")]),
                ("empty", [("Authorization", "Bearer ")]),
                ("basic scheme", [("Authorization", "Basic \(api.tokens[.admin]!)")]),
                ("hash as secret", [("Authorization", "Bearer \(TokenSecret.sha256(of: api.tokens[.admin]!))")]),
            ]
            for path in Self.readPaths + ["/v1/tokens"] {
                for (what, headers) in attempts {
                    let response = try await api.client.get(path, headers: headers)
                    #expect(response.status == 401, "\(path) with \(what) token: \(response.status)")
                    #expect(response.header("content-type") == "application/problem+json", "\(path) \(what)")
                    #expect(response.json["code"] as? String == "unauthorized", "\(path) \(what): \(response.text)")
                    #expect(response.json["status"] as? Int == 401)
                    #expect(response.header("www-authenticate")?.hasPrefix("Bearer") == true)
                }
            }
        }
    }

    /// The scope matrix: read reaches every read, /v1/tokens needs admin (403 below it).
    @Test func scopesIncludeTheOnesBelowThem() async throws {
        try await APIServer.with { api in
            for path in Self.readPaths where path != "/v1/devices/d-1" && path != "/readyz" {
                for scope in TokenScope.allCases {
                    let response = try await api.get(path, scope)
                    #expect(response.status == 200, "\(path) as \(scope): \(response.status) \(response.text.prefix(200))")
                }
            }
            for scope in [TokenScope.read, .operate] {
                let refused = try await api.get("/v1/tokens", scope)
                #expect(refused.status == 403, "\(scope)")
                #expect(refused.header("content-type") == "application/problem+json")
                #expect(refused.json["code"] as? String == "insufficient_scope")
                #expect(refused.text.contains("t-\(scope.rawValue)"), "names the token: \(refused.text)")
                #expect(!refused.text.contains("\"t-admin\""))
            }
            let tokens = try await api.get("/v1/tokens", .admin)
            #expect(tokens.status == 200)
            let names = (tokens.json["tokens"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            #expect(names == ["gone", "t-admin", "t-operate", "t-read"])
            // Never a secret nor its hash.
            for secret in api.tokens.values {
                #expect(!tokens.text.contains(secret))
                #expect(!tokens.text.contains(TokenSecret.sha256(of: secret)))
            }
        }
    }

    @Test func theServedDocumentIsTheRepositoryFile() async throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/UpdraftHTTP/openapi.yaml")
        let expected = try Data(contentsOf: file)
        try await APIServer.with { api in
            let served = try await api.get("/openapi.yaml", .read)
            #expect(served.status == 200)
            #expect(served.header("content-type")?.hasPrefix("application/yaml") == true)
            #expect(Data(served.body) == expected)
        }
    }

    @Test func aMissingDocumentIsA404ThatSaysWhatToCopy() async throws {
        let document = OpenAPIDocumentFile(candidates: ["/nonexistent/openapi.yaml"])
        let error = #expect(throws: UpdraftError.self) { try document.bytes() }
        #expect(error?.code == "openapi_document_not_found")
        #expect(Problem(error!).status == 404)
    }

    @Test func readinessIs503WhenAPartIsNotReady() async throws {
        try await APIServer.with(readiness: { [ReadinessCheck("gateway", ok: true), ReadinessCheck("broker", ok: false, detail: "down")] }) { api in
            let response = try await api.get("/readyz", .read)
            #expect(response.status == 503)
            #expect(response.json["ready"] as? Bool == false)
            let checks = response.json["checks"] as? [[String: Any]] ?? []
            #expect(checks.first { $0["name"] as? String == "broker" }?["ok"] as? Bool == false)
        }
    }

    @Test func metricsArePrometheusTextFromTheGatewayCounts() async throws {
        let counts = Counts()
        try await APIServer.with(metrics: {
            GatewayMetricsSnapshot(
                counters: [.mqtt: ["offers.sent": counts.offers, "rejected.not_your_job": 2, "bytes.sent": 4096]],
                devicesOnline: [.mqtt: 3, .coap: 1], activeJobs: [.downloading: 2])
        }) { api in
            let first = try await api.get("/metrics", .read)
            #expect(first.status == 200)
            #expect(first.header("content-type")?.hasPrefix("text/plain") == true)
            for line in [
                #"updraft_devices_online{transport="mqtt"} 3"#, #"updraft_devices_online{transport="coap"} 1"#,
                #"updraft_jobs_active{state="downloading"} 2"#, #"updraft_jobs_active{state="queued"} 0"#,
                #"updraft_offers_sent_total{transport="mqtt"} 1"#,
                #"updraft_refusals_total{transport="mqtt",code="not_your_job"} 2"#,
                #"updraft_chunk_bytes_sent_total{transport="mqtt"} 4096"#,
            ] {
                #expect(first.text.contains(line), "missing \(line) in:\n\(first.text)")
            }
            #expect(first.text.contains("# TYPE updraft_offers_sent_total counter"))
            // Counters follow the gateway's cumulative counts, never counting one twice.
            counts.offers = 5
            let second = try await api.get("/metrics", .read)
            #expect(second.text.contains(#"updraft_offers_sent_total{transport="mqtt"} 5"#), "\(second.text)")
            #expect(second.text.contains(#"updraft_chunk_bytes_sent_total{transport="mqtt"} 4096"#))
        }
    }

    /// A graceful shutdown lets a request in flight finish, then takes no new connection.
    @Test func gracefulShutdownFinishesARequestInFlight() async throws {
        let entered = Gate()
        try await APIServer.with(readiness: {
            entered.open()
            try? await Task.sleep(for: .milliseconds(1500))
            return [ReadinessCheck("gateway", ok: true)]
        }) { api in
            let client = HTTPTestClient(port: api.port)
            defer { Task { await client.shutdown() } }
            let token = api.tokens[.read]!
            let inFlight = Task { try await client.get("/readyz", token: token) }
            try await eventually(timeout: .seconds(10), "the request reached its handler") { entered.isOpen }
            let shutdown = Task { await api.group.triggerGracefulShutdown() }
            let response = try await inFlight.value
            #expect(response.status == 200)
            #expect(response.json["ready"] as? Bool == true)
            await shutdown.value
            try await eventually(timeout: .seconds(10), "the port is closed") { !PortProbe.accepts(port: api.port) }
        }
    }
}

/// A value the test changes while the server reads it.
final class Counts: Sendable {
    private let value = Mutex(1)
    var offers: Int {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

/// Opened once, from any task.
final class Gate: Sendable {
    private let opened = Atomic<Bool>(false)
    func open() { opened.store(true, ordering: .releasing) }
    var isOpen: Bool { opened.load(ordering: .acquiring) }
}
