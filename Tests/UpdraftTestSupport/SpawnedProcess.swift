import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A tool or server started with posix_spawn for a test (mosquitto, libcoap's tools,
/// openssl); `stop()` kills and reaps it. Used by one test task at a time.
///
/// Not Foundation's `Process`: its `waitUntilExit` spins a run loop that never sees the
/// exit when called from a task, and it passes on the blocked signals of the test thread.
package final class SpawnedProcess: @unchecked Sendable {
    package struct Failure: Error, CustomStringConvertible {
        package let description: String
    }

    package let path: String
    package let arguments: [String]
    /// stdout and stderr of the process.
    package let outputFile: URL
    package private(set) var pid: pid_t?
    private var status: Int32?

    /// Starts `path` with `arguments`; stdin is /dev/null, stdout and stderr are appended to `outputFile`.
    package init(_ path: String, _ arguments: [String], outputFile: URL) throws {
        self.path = path
        self.arguments = arguments
        self.outputFile = outputFile
        pid = try Self.spawn(path, arguments, output: outputFile.path)
    }

    /// Starts `path` with its output in a new log file in `directory`.
    package convenience init(_ path: String, _ arguments: [String], directory: URL) throws {
        let name = "\((path as NSString).lastPathComponent)-\(UUID().uuidString).log"
        try self.init(path, arguments, outputFile: directory.appendingPathComponent(name))
    }

    deinit {
        stop()
    }

    /// Runs `path` to the end with its output discarded; throws unless it exits with 0.
    package static func run(_ path: String, _ arguments: [String]) throws {
        let process = try SpawnedProcess(path, arguments, outputFile: URL(fileURLWithPath: "/dev/null"))
        let status = process.waitUntilExit()
        guard status == 0 else {
            throw Failure(description: "\(path) \(arguments.joined(separator: " ")) exited with status \(status)")
        }
    }

    package var output: String {
        (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
    }

    /// The exit status (128 + signal when killed) once exited, without blocking; else `nil`.
    package func exitStatus() -> Int32? {
        if let status { return status }
        guard let pid else { return nil }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
        return reaped(raw)
    }

    /// Blocks the calling thread until the process exits; returns its exit status.
    @discardableResult
    package func waitUntilExit() -> Int32 {
        if let status { return status }
        guard let pid else { return -1 }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        return reaped(raw)
    }

    /// Waits (polling `waitpid`) for the exit; kills the process after `timeout`. Returns the exit status.
    @discardableResult
    package func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = exitStatus() { return status }
            try await Task.sleep(for: .milliseconds(20))
        }
        stop()
        throw Failure(description: "\(path) \(arguments.joined(separator: " ")) did not exit within \(timeout):\n\(output)")
    }

    /// Sends `signal` (SIGKILL unless told) and reaps the process. Idempotent.
    package func stop(signal: Int32 = SIGKILL) {
        guard let pid, status == nil else { return }
        kill(pid, signal)
        waitUntilExit()
    }

    private func reaped(_ raw: Int32) -> Int32 {
        pid = nil
        let exited = (raw & 0x7F) == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
        status = exited
        return exited
    }

    private static func spawn(_ path: String, _ arguments: [String], output: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of this process: servers of parallel tests must not stay bound in a child.
        if let closeFrom = addCloseFrom {
            _ = closeFrom(&actions, 3)
        }
        // Test tasks run on threads that block signals; the child must not inherit that
        // mask (mosquitto would ignore SIGTERM).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw Failure(description: "posix_spawn \(path): \(String(cString: strerror(rc)))") }
        return pid
    }
}

/// glibc 2.34's `posix_spawn_file_actions_addclosefrom_np`, which the Glibc module does not export.
private let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
        return nil
    }
    return unsafeBitCast(
        symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32).self)
}()
