import Foundation
import Logging
import LoopbackPorts
import Mosquitto
import UpdraftTestSupport

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
    private var process: SpawnedProcess?

    var logFile: URL { directory.appendingPathComponent("mosquitto.log") }

    /// Creates the directory and picks a port; `start()` launches the broker.
    init(config extraConfig: [String] = []) throws {
        self.extraConfig = extraConfig
        self.port = PortProbe.freePort()
        self.directory = try makeTemporaryDirectory(prefix: "mosquitto-test")
    }

    deinit {
        process?.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// `mosquitto_passwd -b -c` into the broker directory; returns the file path.
    func makePasswordFile(user: String, password: String) throws -> String {
        let path = directory.appendingPathComponent("passwd").path
        try SpawnedProcess.run("/usr/bin/mosquitto_passwd", ["-b", "-c", path, user, password])
        return path
    }

    /// A throw-away CA and a server certificate for 127.0.0.1, in the broker directory.
    func makeTLSFiles() throws -> (caFile: String, certFile: String, keyFile: String) {
        let dir = directory.path
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try "subjectAltName=IP:127.0.0.1\n".write(toFile: "\(dir)/san.ext", atomically: true, encoding: .utf8)
        try SpawnedProcess.run("/usr/bin/openssl", ["req", "-x509"] + ec + [
            "-keyout", "\(dir)/ca.key", "-out", "\(dir)/ca.crt", "-days", "1", "-subj", "/CN=Updraft Test CA"])
        try SpawnedProcess.run("/usr/bin/openssl", ["req"] + ec + [
            "-keyout", "\(dir)/server.key", "-out", "\(dir)/server.csr", "-subj", "/CN=127.0.0.1"])
        try SpawnedProcess.run("/usr/bin/openssl", [
            "x509", "-req", "-in", "\(dir)/server.csr", "-CA", "\(dir)/ca.crt", "-CAkey", "\(dir)/ca.key",
            "-CAcreateserial", "-out", "\(dir)/server.crt", "-days", "1", "-extfile", "\(dir)/san.ext"])
        // mosquitto started as root reads the key after switching to its own user.
        chmod("\(dir)/server.key", 0o644)
        return ("\(dir)/ca.crt", "\(dir)/server.crt", "\(dir)/server.key")
    }

    /// Starts (or restarts) the broker on `port` and waits until it accepts connections.
    func start() async throws {
        precondition(process == nil, "broker already running")
        let config = directory.appendingPathComponent("mosquitto.conf")
        let lines = ["listener \(port) 127.0.0.1", "persistence false", "log_dest stdout", "log_type all"]
            + (extraConfig.contains { $0.hasPrefix("allow_anonymous") } ? [] : ["allow_anonymous true"])
            + extraConfig
        try lines.joined(separator: "\n").appending("\n").write(to: config, atomically: true, encoding: .utf8)
        // Another test's broker on this port would pass the readiness probe for ours.
        if PortProbe.accepts(port: port) { throw Failure(description: "port \(port) is already taken by another listener") }

        let process = try SpawnedProcess("/usr/sbin/mosquitto", ["-c", config.path], outputFile: logFile)
        self.process = process

        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if process.exitStatus() != nil {
                self.process = nil
                let log = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
                throw Failure(description: "mosquitto exited at start (port \(port)):\n\(log.suffix(2000))")
            }
            if PortProbe.accepts(port: port) {
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        kill()
        throw Failure(description: "mosquitto did not accept connections on \(port) within 30 s")
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
        process?.stop(signal: signal)
        process = nil
    }

    func options(clientID: String) -> MosquittoOptions {
        MosquittoOptions(clientID: clientID, host: "127.0.0.1", port: port)
    }

    /// A client of this broker, connected (and subscribed to `filter` at QoS 1 when
    /// given); `tune` adjusts its options first.
    func connectedClient(
        _ clientID: String, subscribedTo filter: String? = nil, _ tune: (inout MosquittoOptions) -> Void = { _ in }
    ) async throws -> MosquittoClient {
        var options = options(clientID: clientID)
        tune(&options)
        let client = MosquittoClient(options: options, logger: testLogger)
        try await client.connect()
        if let filter { try await client.subscribe(filter) }
        return client
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

/// MOSQUITTO_TEST_LOG=debug shows the client's and libmosquitto's logs.
let testLogger = makeTestLogger(label: "MosquittoTests", levelVariable: "MOSQUITTO_TEST_LOG")

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
