import Foundation
import LoopbackPorts
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// A real `updraft serve` process (its broker too, CoAP off) over a ``ServeFolder``, with an
/// HTTP API on a free port and one admin token: for tests that look at the process from
/// outside (its memory) or point an outside tool at it (schemathesis).
struct ServedAPI {
    let folder: ServeFolder
    let process: ChildProcess
    let port: Int
    let adminToken: String
    let client: HTTPTestClient

    /// Runs `body` against a started `updraft serve` with `environment` added, then kills
    /// it and removes its folder.
    static func with(
        _ prefix: String, environment extra: [String: String] = [:], _ body: (ServedAPI) async throws -> Void
    ) async throws {
        guard let binary = ProcessRestartTests.updraftBinary else { throw UpdraftError("test_setup", "build the updraft executable first") }
        let folder = try await ServeFolder(prefix, imageBytes: 4096, seed: 5)
        let port = PortProbe.freePort()
        let token = try await folder.ops.createToken(name: "admin", scope: "admin").secret.value
        var environment = ProcessInfo.processInfo.environment
        environment.merge(servedBroker(port: folder.brokerPort)) { $1 }
        environment["UPDRAFT_COAP_ENABLED"] = "false"
        environment["UPDRAFT_HTTP_PORT"] = "\(port)"
        environment.merge(extra) { $1 }
        let process = try ChildProcess(
            executable: binary, arguments: ["serve", "--data-dir", folder.path, "--log-level", "warning"],
            outputFile: folder.path + "/serve.log", environment: environment)
        let api = ServedAPI(folder: folder, process: process, port: port, adminToken: token, client: HTTPTestClient(port: port))
        var failure: (any Error)?
        do {
            try await eventually(timeout: .seconds(60), "the HTTP API of serve") { (try? await api.client.get("/healthz").status) == 200 }
            try await body(api)
        } catch { failure = error }
        await api.client.shutdown()
        folder.remove(after: [process])
        if let failure { throw failure }
    }

    /// `VmRSS` or `VmHWM` (peak) of the serve process, in bytes, from /proc.
    func memory(_ field: String) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(process.pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { throw UpdraftError("test_setup", "no \(field) in /proc/\(process.pid)/status") }
        return kib * 1024
    }

    /// Resets the process's peak resident size (`VmHWM`) to its current one (clear_refs 5).
    func resetPeakMemory() throws {
        try "5".write(toFile: "/proc/\(process.pid)/clear_refs", atomically: false, encoding: .utf8)
    }

    var serveLog: String { (try? String(contentsOfFile: folder.path + "/serve.log", encoding: .utf8)) ?? "" }
}
