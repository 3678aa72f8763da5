import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// The real `updraft` binary as a child process, for the tests of what a user sees:
/// exit status, one-line errors, and what the process leaves behind.
struct CLIProcess {
    struct Run {
        let status: Int32
        let output: String
        /// The error lines (`error: ...`) the command printed.
        var errors: [Substring] { output.split(separator: "\n").filter { $0.hasPrefix("error:") } }
    }

    let binary: String
    /// Where command output goes; not the data directory, which some tests make unusable.
    let logs: String

    init() throws {
        binary = try #require(ProcessRestartTests.updraftBinary, "build the updraft executable first (swift build --build-tests builds it)")
        logs = try makeTemporaryDirectory(prefix: "updraft-cli-logs").path
    }

    func removeLogs() { try? FileManager.default.removeItem(atPath: logs) }

    /// Starts `updraft <arguments>` with `environment` added to ours (UPDRAFT_* of the
    /// test process removed, so that only what a test sets counts).
    func start(_ arguments: [String], environment: [String: String] = [:], executable: String? = nil) throws -> (ChildProcess, String) {
        let output = logs + "/run-\(UUID().uuidString.prefix(8)).log"
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("UPDRAFT_") }
        // `serve`s of parallel tests would all take the HTTP API's fixed default port.
        env["UPDRAFT_HTTP_PORT"] = "0"
        env.merge(environment) { _, new in new }
        let process = try ChildProcess(
            executable: executable ?? binary, arguments: arguments, outputFile: output,
            environment: env)
        return (process, output)
    }

    /// Runs to the end; a command still running after `timeout` is killed and fails the test.
    func run(
        _ arguments: [String], environment: [String: String] = [:], executable: String? = nil, timeout: Duration = .seconds(60)
    ) async throws -> Run {
        let (process, output) = try start(arguments, environment: environment, executable: executable)
        let exited = await process.waitForExit(timeout: timeout)
        if !exited {
            kill(process.pid, SIGKILL)
            _ = await process.waitForExit(timeout: .seconds(10))
        }
        #expect(exited, "updraft \(arguments.joined(separator: " ")) still ran after \(timeout)")
        let status = process.terminationStatus
        return Run(
            status: exited ? (status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)) : -1,
            output: (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    /// A fresh data directory with a release key (and so a store), removed by `removeLogs`'s caller.
    func dataDirectory() async throws -> String {
        let dir = logs + "/data"
        let made = try await run(["keys", "generate", "--data-dir", dir, "--log-level", "error"])
        try #require(made.status == 0, "\(made.output)")
        return dir
    }
}

extension CLIProcess {
    /// A data directory whose catalog holds thermo@1.0 and thermo@2.0 (added by the binary),
    /// and the store beside it.
    func thermoCatalog() async throws -> (dir: String, ops: Operations) {
        let dir = try await dataDirectory()
        for (version, byte) in [("1.0", UInt8(1)), ("2.0", UInt8(2))] {
            let file = logs + "/fw-\(version).bin"
            FileManager.default.createFile(atPath: file, contents: Data(repeating: byte, count: 8192))
            let added = try await run(["firmware", "add", file, "--product", "thermo", "--version", version, "--data-dir", dir])
            try #require(added.status == 0, "\(added.output)")
        }
        var configuration = UpdraftConfiguration()
        configuration.dataDirectory = dir
        return (dir, try Operations(configuration: configuration, access: .existing, logger: Harness.logger))
    }
}

/// Whether `pid` is a live process (a zombie waiting for a reaper counts as gone).
func processIsAlive(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return false }
    let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
    return state != "Z" && state != "X"
}

/// The pid in a pid file, if any.
func pid(inFile path: String) -> pid_t? {
    (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
}

/// Stops what a test started, whatever happened: its processes and the managed broker of
/// data directory `dir` (which an old updraft could orphan).
func killAll(_ processes: [ChildProcess?], brokerOf dir: String) {
    for process in processes.compactMap({ $0 }) where process.isRunning { kill(process.pid, SIGKILL) }
    if let pid = pid(inFile: dir + "/broker/mosquitto.pid") { kill(pid, SIGKILL) }
}
