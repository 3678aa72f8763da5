import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport

/// The real `updraft serve` process, killed with SIGKILL mid-release and started again.
@Suite(.timeLimit(.minutes(3))) struct ProcessRestartTests {
    static var updraftBinary: String? {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("updraft").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// Foundation's Process is not used: its waitUntilExit spins a run loop and never
    /// returns in a test process whose SIGCHLD it does not see.
    func serve(_ binary: String, dataDir: String, port: Int) throws -> ChildProcess {
        var environment = ProcessInfo.processInfo.environment
        environment.merge(servedBroker(port: port)) { $1 }
        environment["UPDRAFT_COAP_ENABLED"] = "false"
        environment["UPDRAFT_HTTP_PORT"] = "0"
        return try ChildProcess(
            executable: binary, arguments: ["serve", "--data-dir", dataDir, "--log-level", "warning"],
            outputFile: dataDir + "/serve.log", environment: environment)
    }

    @Test func aJobAcceptedBeforeKill9CompletesAfterRestart() async throws {
        let binary = try #require(Self.updraftBinary, "build the updraft executable first (swift build --build-tests builds it)")
        let folder = try await ServeFolder("updraft-kill", imageBytes: 300_000, seed: 9)
        let (dir, configuration, ops, firmware) = (folder.path, folder.configuration, folder.ops, folder.firmware)
        let first = try serve(binary, dataDir: dir, port: folder.brokerPort)
        var second: ChildProcess?
        defer { folder.remove(after: [first, second].compactMap { $0 }) }
        let fleet = try await folder.startedFleet(8) { sim in
            sim.chunkSize = 512
            sim.windowCount = 2
        }
        // The CLI path: written to the store while the gateway runs in another process.
        let plan = try await ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
        #expect(plan.jobs.count == 8)
        try await eventually(timeout: .seconds(60), "downloads to start") {
            try await ops.store.jobs(release: plan.release.id).contains { $0.state == .downloading }
        }
        kill(first.pid, SIGKILL)
        #expect(await first.waitForExit(timeout: .seconds(10)))
        #expect(first.terminationStatus & 0x7f == SIGKILL, "killed by a signal")

        second = try serve(binary, dataDir: dir, port: folder.brokerPort)
        try await eventually(timeout: .seconds(120), "every job to succeed after the restart") {
            try await ops.store.jobs(release: plan.release.id).allSatisfy { $0.state == .succeeded }
        }
        try await fleet.waitForAll(version: "2.0", timeout: .seconds(30))
        await fleet.stop()

        // A polite stop ends the gateway and its broker.
        let process = try #require(second)
        process.signal(SIGTERM)
        #expect(await process.waitForExit(timeout: .seconds(30)), "updraft serve did not stop on SIGTERM")
        #expect(process.terminationStatus == 0, "exit status \(process.terminationStatus >> 8)")
        let pidText = try? String(contentsOfFile: dir + "/broker/mosquitto.pid", encoding: .utf8)
        if let pid = pidText.flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            #expect(kill(pid, 0) != 0, "mosquitto still runs after updraft serve stopped")
        }
    }
}
