import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport

/// The `updraft` CLI beside a running gateway on the same status database, as operators
/// use it: every process keeps its SQLite locks, so no CLI process ever takes itself for
/// the file's last user and checkpoints and deletes the WAL under the gateway (whose later
/// commits, accepted jobs and events, would go to a deleted file: "database disk image is
/// malformed"). See StoreLockTests for the cause that once did it.
@Suite(.serialized, .timeLimit(.minutes(4))) struct StoreSharingTests {
    static let sqlite3 = ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// `sqlite3 FILE 'PRAGMA integrity_check'` in a process of its own.
    static func integrity(of path: String, _ cli: CLIProcess) async throws -> String {
        let binary = try #require(sqlite3, "install sqlite3 (make deps)")
        let run = try await cli.run([path, "PRAGMA integrity_check"], executable: binary)
        return run.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func run(_ cli: CLIProcess, _ dir: String, _ arguments: [String]) async throws {
        let run = try await cli.run(arguments + ["--data-dir", dir, "--log-level", "error"])
        #expect(run.status == 0, "updraft \(arguments.joined(separator: " ")): \(run.output)")
    }

    /// The in-process gateway of the Harness (the store of LocalStack's Operations and the
    /// gateway's, in one process, as in `updraft demo`): CLI commands run to their end, then
    /// a device announces and is offered a job; another process reads it all from a whole file.
    @Test func cliCommandsBesideAnInProcessGatewayLoseNothing() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        try await Harness.with { h in
            let dir = h.stack.directory
            let path = h.stack.configuration.resolvedSQLitePath
            for arguments in [["credentials", "show"], ["credentials", "show"], ["device", "list"], ["release", "list"]] {
                try await Self.run(cli, dir, arguments)
            }
            #expect(FileManager.default.fileExists(atPath: path + "-wal"), "a CLI process deleted the WAL of the running gateway")
            let device = try await RawDevice.connect("dev-1", on: h)
            defer { Task { await device.close() } }
            try await device.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            try await h.waitUntilRegistered(1)
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["dev-1"]), allowDowngrade: false)
            #expect(try await device.next("/job") != nil)

            let listed = try await cli.run(["device", "list", "--data-dir", dir, "--log-level", "error"])
            #expect(listed.output.contains("dev-1\tthermo\t1.0"), "\(listed.output)")
            let events = try await cli.run(["events", "--data-dir", dir, "--log-level", "error"])
            #expect(events.output.contains("\(plan.release.id)") && events.output.contains("dev-1"), "\(events.output)")
            #expect(try await Self.integrity(of: path, cli) == "ok")
        }
    }

    /// The production pattern: `updraft serve` rolls a release out to a fleet while
    /// operators run CLI commands of every kind; serve keeps its locks throughout, every
    /// job succeeds, the event log is gap-free with every success in it, and the file is whole.
    @Test func cliCommandsBesideServeDuringARolloutLoseNothing() async throws {
        let binary = try #require(ProcessRestartTests.updraftBinary, "build the updraft executable first (swift build --build-tests builds it)")
        let cli = try CLIProcess()
        let folder = try await ServeFolder("updraft-share", imageBytes: 120_000, seed: 5)
        let (dir, path, ops) = (folder.path, folder.configuration.resolvedSQLitePath, folder.ops)
        let serve = try ProcessRestartTests().serve(binary, dataDir: dir, port: folder.brokerPort)
        defer {
            folder.remove(after: [serve])
            cli.removeLogs()
        }
        let fleet = try await folder.startedFleet(6) { sim in
            sim.chunkSize = 512
            sim.windowCount = 2
        }
        try await Self.run(cli, dir, ["release", "create", "--firmware", "thermo@2.0", "--product", "thermo"])
        let release = try #require(try await ops.store.releases().first)
        let commands: [[String]] = [
            ["credentials", "show"], ["device", "list"], ["release", "list"], ["firmware", "list"], ["events"],
            ["release", "show", "\(release.id)"],
        ]
        var round = 0
        while try await !ops.store.jobs(release: release.id).allSatisfy({ $0.state == .succeeded }) {
            try #require(round < 200, "the rollout did not end")
            try await Self.run(cli, dir, round % 7 == 6 ? ["device", "provision", "extra-\(round)"] : commands[round % 7])
            #expect(!posixLocks(of: serve.pid, on: path).isEmpty, "updraft serve lost its locks on the store")
            round += 1
        }
        #expect(round >= 3, "the CLI ran beside the downloads")
        try await fleet.waitForAll(version: "2.0", timeout: .seconds(30))
        await fleet.stop()
        serve.signal(SIGTERM)
        #expect(await serve.waitForExit(timeout: .seconds(30)))

        let jobs = try await ops.store.jobs(release: release.id)
        let events = try await ops.store.events(after: 0, limit: 100_000)
        #expect(zip(events, events.dropFirst()).allSatisfy { $1.sequence == $0.sequence + 1 }, "a gap in the event log")
        let succeeded = Set(events.filter { $0.kind == .jobTransition && $0.to == .succeeded }.compactMap(\.jobID))
        #expect(jobs.count == 6 && Set(jobs.map(\.id)) == succeeded, "a job's success is missing from the event log")
        #expect(try await Self.integrity(of: path, cli) == "ok")
    }
}
