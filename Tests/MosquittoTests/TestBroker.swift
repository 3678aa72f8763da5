import Foundation
import Synchronization
import Logging
import Mosquitto

#if canImport(Glibc)
import Glibc
#endif

/// A real `mosquitto` broker on a free port of 127.0.0.1, in its own temp directory.
///
/// Use ``withBroker(_:_:)`` so the broker is stopped even when the test fails.
final class TestBroker: @unchecked Sendable {  // used by one test task at a time
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private(set) var port: Int
    let directory: URL
    /// Lines appended to the generated configuration; read by `start()`.
    var extraConfig: [String]
    private var pid: pid_t?

    var logFile: URL { directory.appendingPathComponent("mosquitto.log") }

    /// Creates the directory and picks a port; `start()` launches the broker.
    init(config extraConfig: [String] = []) throws {
        self.extraConfig = extraConfig
        self.port = try Self.freePort()
        self.directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mosquitto-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit {
        terminate(signal: SIGKILL)
        try? FileManager.default.removeItem(at: directory)
    }

    /// `mosquitto_passwd -b -c` into the broker directory; returns the file path.
    func makePasswordFile(user: String, password: String) throws -> String {
        let path = directory.appendingPathComponent("passwd").path
        try Self.run("/usr/bin/mosquitto_passwd", ["-b", "-c", path, user, password])
        return path
    }

    /// A throw-away CA and a server certificate for 127.0.0.1, in the broker directory.
    func makeTLSFiles() throws -> (caFile: String, certFile: String, keyFile: String) {
        let dir = directory.path
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try "subjectAltName=IP:127.0.0.1\n".write(toFile: "\(dir)/san.ext", atomically: true, encoding: .utf8)
        try Self.run("/usr/bin/openssl", ["req", "-x509"] + ec + [
            "-keyout", "\(dir)/ca.key", "-out", "\(dir)/ca.crt", "-days", "1", "-subj", "/CN=Updraft Test CA"])
        try Self.run("/usr/bin/openssl", ["req"] + ec + [
            "-keyout", "\(dir)/server.key", "-out", "\(dir)/server.csr", "-subj", "/CN=127.0.0.1"])
        try Self.run("/usr/bin/openssl", [
            "x509", "-req", "-in", "\(dir)/server.csr", "-CA", "\(dir)/ca.crt", "-CAkey", "\(dir)/ca.key",
            "-CAcreateserial", "-out", "\(dir)/server.crt", "-days", "1", "-extfile", "\(dir)/san.ext"])
        // mosquitto started as root reads the key after switching to its own user.
        chmod("\(dir)/server.key", 0o644)
        return ("\(dir)/ca.crt", "\(dir)/server.crt", "\(dir)/server.key")
    }

    private static func run(_ path: String, _ arguments: [String]) throws {
        let status = wait(try spawn(path, arguments, output: "/dev/null"))
        guard status == 0 else {
            throw Failure(description: "\(path) \(arguments.joined(separator: " ")) exited with status \(status)")
        }
    }

    /// Starts (or restarts) the broker on `port` and waits until it accepts connections.
    func start() async throws {
        precondition(pid == nil, "broker already running")
        let config = directory.appendingPathComponent("mosquitto.conf")
        let lines = ["listener \(port) 127.0.0.1", "persistence false", "log_dest stdout", "log_type all"]
            + (extraConfig.contains { $0.hasPrefix("allow_anonymous") } ? [] : ["allow_anonymous true"])
            + extraConfig
        try lines.joined(separator: "\n").appending("\n").write(to: config, atomically: true, encoding: .utf8)
        // Another test's broker on this port would pass the readiness probe for ours.
        if Self.accepts(port: port) { throw Failure(description: "port \(port) is already taken by another listener") }

        let pid = try Self.spawn("/usr/sbin/mosquitto", ["-c", config.path], output: logFile.path)
        self.pid = pid

        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                self.pid = nil
                let log = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
                throw Failure(description: "mosquitto exited at start (port \(port)):\n\(log.suffix(2000))")
            }
            if Self.accepts(port: port) {
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        terminate(signal: SIGKILL)
        throw Failure(description: "mosquitto did not accept connections on \(port) within 10 s")
    }

    /// SIGTERM and wait.
    func stop() {
        terminate(signal: SIGTERM)
    }

    /// SIGKILL and wait: connections end without the broker's cooperation.
    func kill() {
        terminate(signal: SIGKILL)
    }

    private func terminate(signal: Int32) {
        guard let pid else { return }
        self.pid = nil
        Glibc.kill(pid, signal)
        _ = Self.wait(pid)
    }

    // MARK: Processes (posix_spawn: Foundation's Process.waitUntilExit spins
    // a run loop that never sees the exit when called from a task)

    private static func spawn(_ path: String, _ arguments: [String], output: String?) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let output {
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // Test tasks run on dispatch threads, which block signals; the child
        // would inherit that mask and ignore SIGTERM.
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
        guard rc == 0 else { throw Failure(description: "posix_spawn \(path): \(rc)") }
        return pid
    }

    /// Blocks until `pid` exits; returns its exit status.
    private static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status >> 8) & 0xFF
    }

    func options(clientID: String) -> MosquittoOptions {
        MosquittoOptions(clientID: clientID, host: "127.0.0.1", port: port)
    }

    // MARK: Sockets

    /// A port the kernel just handed out for 127.0.0.1, that nobody listens on and that
    /// no other test of this process got (the kernel may hand out the same one twice).
    static func freePort() throws -> Int {
        while true {
            let port = try anyFreePort()
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
    }

    private static let handedOut = Mutex<Set<Int>>([])

    private static func anyFreePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        defer { close(fd) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw Failure(description: "bind: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw Failure(description: "getsockname: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopback(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return rc == 0
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}

/// Runs `body` with a started broker and stops the broker afterwards, also on failure.
func withBroker<T>(
    config: [String] = [], _ body: (TestBroker) async throws -> T
) async throws -> T {
    let broker = try TestBroker(config: config)
    try await broker.start()
    do {
        let result = try await body(broker)
        broker.stop()
        return result
    } catch {
        broker.stop()
        throw error
    }
}

// MARK: - Helpers

let testLogger: Logger = {
    var logger = Logger(label: "MosquittoTests")
    // MOSQUITTO_TEST_LOG=debug shows the client's and libmosquitto's logs.
    let level = ProcessInfo.processInfo.environment["MOSQUITTO_TEST_LOG"].flatMap(Logger.Level.init(rawValue:))
    logger.logLevel = level ?? .critical
    return logger
}()

/// Runs `body`, returning `nil` if it takes longer than `timeout` (the body is cancelled).
func withTimeout<T: Sendable>(
    _ timeout: Duration, _ body: @escaping @Sendable () async throws -> T
) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func eventually(
    timeout: Duration = .seconds(15), _ condition: @Sendable () async -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() {
            return true
        }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

extension MosquittoClient {
    /// The next message, or `nil` after `timeout`.
    func nextMessage(timeout: Duration = .seconds(15)) async throws -> MosquittoMessage? {
        let messages = self.messages
        return try await withTimeout(timeout) {
            var iterator = messages.makeAsyncIterator()
            return await iterator.next()
        } ?? nil
    }
}
