import Foundation
import Logging
import LoopbackPorts
import ServiceLifecycle
import Synchronization
import UpdraftCore
import UpdraftMQTT
import UpdraftWire

/// Runs mosquitto as a child process: writes its configuration and ACL from the templates
/// in Config/, starts it on a loopback port, restarts it when it dies, stops it on shutdown.
public final class ManagedBroker: Service, Sendable {
    public struct Settings: Sendable {
        /// TLS, mutual TLS and plain listeners (mqtt.broker.*_port).
        public var tlsHost: String
        public var tlsPort: Int
        public var mtlsPort: Int
        public var plainPort: Int
        /// The fleet CA and the broker's certificate (made when generated and missing).
        public var pki: FleetPKI
        public var directory: String
        public var mosquittoPath: String
        public var template: String
        public var topicPrefix: String
        /// The ACL's topic rules come from the dialect the gateway and devices speak.
        public var dialect: any WireDialect
        public var gatewayUser: String
        public var maxPacketSize: Int
        public var authentication: MQTTSettings.Authentication
        /// The password file and the gateway's and events consumer's accounts.
        public var credentials: BrokerCredentials

        /// - Parameter dialect: nil: the configured prefix in today's protocol.
        public init(configuration c: UpdraftConfiguration, dialect: (any WireDialect)? = nil) {
            self.dialect = dialect ?? c.dialect
            (tlsHost, tlsPort, mtlsPort, plainPort) = (c.mqtt.broker.tlsHost, c.mqtt.broker.tlsPort, c.mqtt.broker.mtlsPort, c.mqtt.broker.plainPort)
            pki = FleetPKI(configuration: c)
            directory = c.path("broker")
            mosquittoPath = c.mqtt.broker.mosquittoPath
            template = c.mqtt.broker.template
            topicPrefix = c.mqtt.topicPrefix
            gatewayUser = c.mqtt.username
            maxPacketSize = c.mqtt.chunk.max + 4096
            authentication = c.mqtt.broker.authentication
            credentials = BrokerCredentials(configuration: c)
        }

        var listeners: BrokerListeners {
            BrokerListeners(
                host: tlsHost, tlsPort: tlsPort, mtlsPort: mtlsPort, plainPort: plainPort, caFile: pki.caFile,
                certFile: pki.brokerCertFile, keyFile: pki.brokerKeyFile, crlFile: pki.keepsCRL ? pki.crlFile : nil,
                authenticates: authentication == .passwordFile)
        }
    }

    public let settings: Settings
    private let logger: Logger
    private let process = Mutex<ChildProcess?>(nil)
    private let restarts = Atomic<Int>(0)

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    public var restartCount: Int { restarts.load(ordering: .relaxed) }
    public var pid: Int32? { process.withLock { $0?.pid } }

    /// Writes the configuration, stops a broker left over by a killed gateway, starts
    /// mosquitto and waits until it accepts connections. The caller holds the data
    /// directory's `DataDirectoryLock`.
    public func start() async throws {
        let binary = try Self.locateMosquitto(settings.mosquittoPath)
        try FileManager.default.createDirectory(atPath: settings.directory, withIntermediateDirectories: true)
        let confPath = try writeConfiguration()
        stopLeftover()
        try await launch(binary: binary, conf: confPath)
    }

    /// Supervises until graceful shutdown, restarting mosquitto when it exits on its own.
    public func run() async throws {
        if pid == nil { try await start() }
        let binary = try Self.locateMosquitto(settings.mosquittoPath)
        let conf = settings.directory + "/mosquitto.conf"
        var backoff: Duration = .milliseconds(100)
        await withGracefulShutdownHandler {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let running = process.withLock { $0?.isRunning ?? false }
                if running {
                    backoff = .milliseconds(100)
                    try? await Task.sleep(for: .milliseconds(200))
                    continue
                }
                let status = process.withLock { $0?.terminationStatus } ?? -1
                logger.error("mosquitto exited; restarting", metadata: ["exit.status": "\(status)", "backoff.ms": "\(backoff.components.attoseconds / 1_000_000_000_000_000 + backoff.components.seconds * 1000)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
                do {
                    try await launch(binary: binary, conf: conf)
                    restarts.add(1, ordering: .relaxed)
                } catch {
                    logger.error("mosquitto restart failed", metadata: ["error": "\(error)"])
                }
            }
        } onGracefulShutdown: {
            // run()'s loop notices; stop() below does the work.
        }
        stop()
    }

    /// Stops mosquitto (SIGTERM, then SIGKILL after 5 s) and waits for it.
    public func stop() {
        guard let child = process.withLock({ p -> ChildProcess? in defer { p = nil }; return p }) else { return }
        guard child.isRunning else { return }
        child.stop()
        logger.info("mosquitto stopped")
    }

    /// Test hook and chaos tool: kills mosquitto with SIGKILL; the supervisor restarts it.
    public func killForTesting() {
        if let pid { kill(pid, SIGKILL) }
    }

    // MARK: Internals

    private func launch(binary: String, conf: String) async throws {
        let logPath = settings.directory + "/mosquitto.log"
        // Something else on a port would answer the readiness probe below in our
        // broker's place, and the gateway would talk to a stranger.
        let ports = settings.listeners.ports
        for (host, port) in ports where PortProbe.accepts(host: host, port: port) {
            throw UpdraftError(
                "broker_port_in_use",
                "Port \(port) on \(host) is already taken by another program. Change mqtt.broker.tls_port, mtls_port or plain_port, or set mqtt.broker.external: true to use that broker.")
        }
        let child: ChildProcess
        do {
            // SIGTERM when the gateway dies, however it dies: mosquitto saves its
            // persistence file and exits instead of holding the port as an orphan.
            child = try ChildProcess(executable: binary, arguments: ["-c", conf], outputFile: logPath, deathSignal: SIGTERM)
        } catch {
            throw UpdraftError("broker_start_failed", "Could not start \(binary): \(error). Check that it is executable, or set mqtt.broker.external: true to use your own broker.")
        }
        process.withLock { $0 = child }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if !child.isRunning {
                let tail = (try? String(contentsOfFile: logPath, encoding: .utf8))?.split(separator: "\n").suffix(3).joined(separator: " | ") ?? ""
                throw UpdraftError("broker_start_failed", "mosquitto exited at start (status \(child.terminationStatus)): \(tail). Is one of the ports \(ports.map { String($0.port) }.joined(separator: ", ")) already in use? Change mqtt.broker.tls_port, mtls_port or plain_port.")
            }
            if ports.allSatisfy({ PortProbe.accepts(host: $0.host, port: $0.port) }), child.isRunning {
                logger.info("mosquitto started", metadata: ["broker.ports": "\(ports.map(\.port))", "broker.pid": "\(child.pid)"])
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        child.stop()
        throw UpdraftError("broker_start_failed", "mosquitto did not accept connections on ports \(ports.map { String($0.port) }.joined(separator: ", ")) within 30 s; see \(logPath).")
    }

    private func writeConfiguration() throws -> String {
        let aclPath = settings.directory + "/mosquitto.acl"
        let confPath = settings.directory + "/mosquitto.conf"
        try settings.pki.prepareBroker()
        let values = [
            "listeners": settings.listeners.lines, "broker_dir": settings.directory, "acl_file": aclPath,
            "prefix": settings.topicPrefix, "gateway_user": settings.gatewayUser,
            "events_user": settings.gatewayUser + "-events", "max_packet_size": "\(settings.maxPacketSize)",
            "user": Self.currentUser,
            "gateway_rules": Self.lines(settings.dialect.gatewayRules),
            "events_rules": Self.lines(settings.dialect.consumerRules(user: settings.gatewayUser + "-events")),
            "device_rules": Self.lines(settings.dialect.deviceRules),
            "authentication": try authenticationLines(),
        ]
        let confTemplate = try ResourceLocator.read(settings.template)
        let aclTemplate = try ResourceLocator.read(
            (settings.template as NSString).deletingLastPathComponent + "/mosquitto.acl.template")
        try Template.render(confTemplate, values).write(toFile: confPath, atomically: true, encoding: .utf8)
        // The consumers' blocks: see BrokerACL.
        try Template.render(aclTemplate, values).write(toFile: settings.directory + BrokerACL.basePath, atomically: true, encoding: .utf8)
        try (Self.lines(settings.dialect.consumerRules(user: "{{consumer}}")) + "\n")
            .write(toFile: settings.directory + BrokerACL.consumerBlockPath, atomically: true, encoding: .utf8)
        try settings.credentials.writeConsumerACL(brokerDirectory: settings.directory)
        return confPath
    }

    private func authenticationLines() throws -> String {
        switch settings.authentication {
        case .none:
            return "allow_anonymous true"
        case .passwordFile:
            try settings.credentials.prepareServiceAccounts()
            // Each listener makes a client's username its client id (BrokerListeners): nobody
            // can take over the gateway's session or a device's by naming its client id.
            return """
                allow_anonymous false
                password_file \(settings.credentials.passwordFile)
                """
        }
    }

    /// Makes the running broker read its password file again (after `provision`): SIGHUP.
    /// - Returns: false when no broker runs on this directory.
    @discardableResult
    public func reload() -> Bool {
        guard let pid, process.withLock({ $0?.isRunning ?? false }) else { return false }
        return kill(pid, SIGHUP) == 0
    }

    /// The same for the broker of another process (the CLI beside `updraft serve`): the
    /// mosquitto whose pid file is in `directory` and that runs its configuration.
    @discardableResult
    public static func reload(directory: String) -> Bool {
        guard let pid = runningPID(directory: directory) else { return false }
        return kill(pid, SIGHUP) == 0
    }

    /// The pid in `directory`'s pid file when that process is a mosquitto running this
    /// directory's configuration (not whatever reuses a stale pid).
    static func runningPID(directory: String) -> Int32? {
        guard let text = try? String(contentsOfFile: directory + "/mosquitto.pid", encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
        else { return nil }
        let arguments = ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "")
            .split(separator: "\0").map(String.init)
        guard arguments.first?.hasSuffix("mosquitto") == true, arguments.contains(directory + "/mosquitto.conf") else { return nil }
        return pid
    }

    /// Stops a mosquitto that an earlier gateway on this data directory left behind (its
    /// parent-death signal normally stops it; a gateway that could not deliver it, or an
    /// older updraft, may leave one). Callers hold the data directory's lock
    /// (`DataDirectoryLock`), so the gateway that started it is really gone; and only a
    /// mosquitto running our configuration file is touched, not whatever reuses its pid.
    private func stopLeftover() {
        let pidFile = settings.directory + "/mosquitto.pid"
        guard let pid = Self.runningPID(directory: settings.directory) else {
            try? FileManager.default.removeItem(atPath: pidFile)
            return
        }
        logger.notice("stopping a mosquitto left over by a gateway that is gone", metadata: ["broker.pid": "\(pid)"])
        kill(pid, SIGTERM)
        for _ in 0..<250 where kill(pid, 0) == 0 { usleep(20_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: pidFile)
    }

    static func lines(_ rules: [BrokerRule]) -> String { rules.map(\.mosquittoLine).joined(separator: "\n") }

    static var currentUser: String {
        guard let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name else { return "root" }
        return String(cString: name)
    }

    public static func locateMosquitto(_ configured: String) throws -> String {
        if !configured.isEmpty {
            guard FileManager.default.isExecutableFile(atPath: configured) else {
                throw UpdraftError("mosquitto_missing", "mqtt.broker.mosquitto_path is '\(configured)', which is not an executable file.")
            }
            return configured
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/local/sbin", "/usr/bin"] {
            let candidate = dir + "/mosquitto"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw UpdraftError(
            "mosquitto_missing",
            "mosquitto is not installed. Install it with `sudo apt-get install -y mosquitto` (Debian/Ubuntu; `make deps` does it), or set mqtt.broker.external: true and point mqtt.broker.host/port at your broker.")
    }
}

/// `{{key}}` substitution for the broker templates.
enum Template {
    static func render(_ template: String, _ values: [String: String]) -> String {
        values.reduce(template) { $0.replacingOccurrences(of: "{{\($1.key)}}", with: $1.value) }
    }
}

/// Finds files shipped in the repository's Config/ folder whether updraft runs from the
/// repository root or elsewhere (it then looks up from the executable's folder).
enum ResourceLocator {
    static func find(_ path: String) -> String? {
        if path.hasPrefix("/") { return FileManager.default.fileExists(atPath: path) ? path : nil }
        if FileManager.default.fileExists(atPath: path) { return path }
        var dir = executable.deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = dir.appendingPathComponent(path).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// This process's executable: /proc/self/exe, since argv[0] is only a name when
    /// `updraft` was found through PATH (then it is not relative to the working directory).
    static var executable: URL {
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return URL(fileURLWithPath: target)
        }
        return URL(fileURLWithPath: CommandLine.arguments.first ?? ".").resolvingSymlinksInPath()
    }

    static func read(_ path: String) throws -> String {
        guard let found = find(path), let text = try? String(contentsOfFile: found, encoding: .utf8) else {
            throw UpdraftError("template_missing", "Cannot find '\(path)'. Run updraft from the repository root, or set mqtt.broker.template to the absolute path of Config/mosquitto.conf.template.")
        }
        return text
    }
}
