import Foundation
import LoopbackPorts
import Synchronization
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftHTTP
import UpdraftTestSupport

/// `updraft events --follow --server`: the API's event stream, resumed with Last-Event-ID
/// after the gateway's HTTP server stops and starts again, every event printed once.
@Suite(.serialized) struct RemoteEventsFollowTests {
    @Test func followSurvivesAGatewayRestartWithoutGapsOrRepeats() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        try await withTemporaryPath(prefix: "updraft-follow") { directory in
            let gateway = try await RestartableAPI(directory: directory)
            try await gateway.start()
            let (follower, output) = try cli.start(
                ["events", "--follow", "--server", "http://127.0.0.1:\(gateway.port)", "--token", gateway.token, "--log-level", "error"])
            defer { kill(follower.pid, SIGKILL) }
            try await gateway.releases(3, from: 0)
            try await eventually(timeout: .seconds(30), "the follower prints the first events") { try await Self.printed(output).count >= gateway.lastSequence() }
            await gateway.stop()
            try await gateway.releases(3, from: 3)  // while the API is down
            try await Task.sleep(for: .seconds(1))
            try await gateway.start()
            try await gateway.releases(3, from: 6)
            let last = try await gateway.lastSequence()
            try await eventually(timeout: .seconds(30), "the follower prints every event after the restart") { try await Self.printed(output).last ?? 0 >= last }
            try await Task.sleep(for: .milliseconds(300))
            let seqs = try await Self.printed(output)
            #expect(seqs == Array(1...last), "every sequence number once, in order: \(seqs)")
            await gateway.stop()
        }
    }

    /// The sequence numbers of the JSON lines the follower printed.
    static func printed(_ path: String) async throws -> [Int64] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.hasPrefix("{") }.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["seq"] as? Int64
        }
    }
}

/// The HTTP API over one data directory, stopped and started again on the same port.
final class RestartableAPI: @unchecked Sendable {
    let ops: UpdraftApp.Operations
    let port = PortProbe.freePort()
    let token: String
    private var task: Task<Void, any Error>?

    init(directory: String) async throws {
        var configuration = UpdraftConfiguration()
        configuration.dataDirectory = directory
        ops = try UpdraftApp.Operations(configuration: configuration, logger: Harness.logger)
        _ = try ops.generateKeys(force: false)
        token = try await ops.createToken(name: "follower", scope: "read").secret.value
        _ = try await ops.addFirmware(file: try Self.image(directory), product: "thermo", version: "1.0")
    }

    static func image(_ directory: String) throws -> String {
        let path = directory + "/fw.bin"
        try Data(repeating: 7, count: 2048).write(to: URL(fileURLWithPath: path))
        return path
    }

    func start() async throws {
        var settings = HTTPSettings()
        settings.port = port
        let listening = Atomic<Bool>(false)
        let backend = HTTPBackend(store: ops.store, readiness: { [] }, metrics: { GatewayMetricsSnapshot() }, operations: OperationsPort(ops))
        let server = HTTPServer(settings: settings, backend: backend, logger: Harness.logger, onRunning: { _ in listening.store(true, ordering: .releasing) })
        task = Task { try await server.run() }
        try await eventually(timeout: .seconds(20), "the HTTP server listens on \(port)") { listening.load(ordering: .acquiring) }
    }

    func stop() async {
        task?.cancel()
        _ = await task?.result
        task = nil
    }

    /// One-off releases to devices that never connected: a release.created and a job.created event each.
    func releases(_ count: Int, from first: Int) async throws {
        for index in first..<(first + count) {
            _ = try await ops.createRelease(firmwareID: "thermo@1.0", target: .devices([try DeviceID(validating: "f\(index)")]), allowDowngrade: false)
        }
    }

    func lastSequence() async throws -> Int64 { try await ops.store.events(after: 0, limit: 10_000).last?.sequence ?? 0 }
}
