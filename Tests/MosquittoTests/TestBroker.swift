import Foundation
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
    private var process: Process?

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
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_passwd")
        tool.arguments = ["-b", "-c", path, user, password]
        try tool.run()
        tool.waitUntilExit()
        guard tool.terminationStatus == 0 else {
            throw Failure(description: "mosquitto_passwd exited with \(tool.terminationStatus)")
        }
        return path
    }

    /// Starts (or restarts) the broker on `port` and waits until it accepts connections.
    func start() async throws {
        precondition(process == nil, "broker already running")
        let config = directory.appendingPathComponent("mosquitto.conf")
        let lines = ["listener \(port) 127.0.0.1", "persistence false", "log_dest stdout", "log_type all"]
            + (extraConfig.contains { $0.hasPrefix("allow_anonymous") } ? [] : ["allow_anonymous true"])
            + extraConfig
        try lines.joined(separator: "\n").appending("\n").write(to: config, atomically: true, encoding: .utf8)

        if !FileManager.default.fileExists(atPath: logFile.path) {
            _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: logFile)
        log.seekToEndOfFile()

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/mosquitto")
        process.arguments = ["-c", config.path]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process

        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                self.process = nil
                throw Failure(description: "mosquitto exited at start (port \(port)); see \(logFile.path)")
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
        guard let process else { return }
        self.process = nil
        if process.isRunning {
            Glibc.kill(process.processIdentifier, signal)
        }
        process.waitUntilExit()
    }

    func options(clientID: String) -> MosquittoOptions {
        MosquittoOptions(clientID: clientID, host: "127.0.0.1", port: port)
    }

    // MARK: Sockets

    /// A port the kernel just handed out for 127.0.0.1 and that nobody listens on.
    static func freePort() throws -> Int {
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
    logger.logLevel = .warning
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
