import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// libcoap's command line tools (Debian's libcoap3-bin) as real peers.
enum CoAPTools {
    static let client = "/usr/bin/coap-client-openssl"
    static let server = "/usr/bin/coap-server-openssl"
}

struct ToolFailure: Error, CustomStringConvertible {
    let description: String
}

/// A spawned tool; `stop()` kills it and reaps it. Used by one test task at a time.
final class SpawnedTool: @unchecked Sendable {
    let path: String
    let arguments: [String]
    /// stdout and stderr of the tool.
    let outputFile: URL
    private var pid: pid_t?
    private var status: Int32?

    /// Starts `path` with `arguments`; stdout and stderr go to `outputFile`.
    init(_ path: String, _ arguments: [String], directory: URL) throws {
        self.path = path
        self.arguments = arguments
        outputFile = directory.appendingPathComponent("\((path as NSString).lastPathComponent)-\(UUID().uuidString).log")
        pid = try Self.spawn(path, arguments, output: outputFile.path)
    }

    deinit {
        stop()
    }

    var output: String {
        (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
    }

    /// The exit status once exited (without blocking), else `nil`.
    func exitStatus() -> Int32? {
        if let status {
            return status
        }
        guard let pid else { return nil }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
        self.pid = nil
        status = (raw & 0x7F) == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
        return status
    }

    /// Waits (polling `waitpid`, never `Process.waitUntilExit`) for the exit;
    /// kills the tool after `timeout`. Returns the exit status.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = exitStatus() {
                return status
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        stop()
        throw ToolFailure(description: "\(path) \(arguments.joined(separator: " ")) did not exit within \(timeout):\n\(output)")
    }

    /// SIGKILL and reap. Idempotent.
    func stop() {
        guard let pid else { return }
        self.pid = nil
        kill(pid, SIGKILL)
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        status = 128 + SIGKILL
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
        // Test tasks run on threads that block signals; the child must not inherit that.
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
        guard rc == 0 else { throw ToolFailure(description: "posix_spawn \(path): \(String(cString: strerror(rc)))") }
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

/// A temporary directory removed at the end of `body`.
func withTemporaryDirectory<T>(_ body: (URL) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("coap-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory)
}

/// Runs `coap-client-openssl` to completion. It exits 0 even when the request
/// failed, so callers check its output and the file it wrote.
func runCoAPClient(_ arguments: [String], directory: URL, timeout: Duration = .seconds(60)) async throws -> (
    status: Int32, output: String
) {
    let tool = try SpawnedTool(CoAPTools.client, arguments, directory: directory)
    defer { tool.stop() }
    let status = try await tool.waitForExit(timeout: timeout)
    return (status, tool.output)
}

// MARK: - Ports

/// A UDP port of 127.0.0.1 the kernel just handed out: bound to port 0, read, closed.
func freeUDPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { throw ToolFailure(description: "socket: errno \(errno)") }
    defer { close(fd) }
    var address = loopback(port: 0)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw ToolFailure(description: "bind: errno \(errno)") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw ToolFailure(description: "getsockname: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A free UDP port below the kernel's ephemeral range, for tests that bind the
/// same port again after a stop. libcoap sets SO_REUSEADDR on its client
/// sockets too, so a client of a parallel test may be auto-bound to a port our
/// server holds, and keep it after the server let go; ephemeral ports are
/// never chosen below the range.
func freeUDPPortBelowEphemeralRange() throws -> Int {
    let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
    let lowest = range.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } ?? 32768
    for _ in 0..<200 {
        // The 6000 ports below the ephemeral range; PortProbe.freeUDPPort (the gateway
        // tests' CoAP ports) stays below 26000, so a port released between a stop and a
        // start here is not handed to a gateway meanwhile.
        let port = Int.random(in: max(1024, lowest - 6_000)..<lowest)
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var address = loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound == 0 {
            return port
        }
    }
    return try freeUDPPort()
}

/// Two consecutive free UDP ports (coap-server-openssl listens on port and port + 1).
func freeUDPPortPair() throws -> Int {
    for _ in 0..<50 {
        let port = try freeUDPPort()
        guard port < 65535 else { continue }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var address = loopback(port: port + 1)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound == 0 {
            return port
        }
    }
    throw ToolFailure(description: "no two consecutive free UDP ports found")
}

func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    return address
}

/// Sends raw datagrams to 127.0.0.1:`port` (hostile input).
func sendDatagrams(_ datagrams: [[UInt8]], to port: Int) throws {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { throw ToolFailure(description: "socket: errno \(errno)") }
    defer { close(fd) }
    var address = loopback(port: port)
    for datagram in datagrams {
        let sent = datagram.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard sent == datagram.count else { throw ToolFailure(description: "sendto: errno \(errno)") }
    }
}

// MARK: - Helpers

let testLogger: Logger = {
    var logger = Logger(label: "CoAPTests")
    // COAP_TEST_LOG=debug shows the server's, client's and libcoap's logs.
    let level = ProcessInfo.processInfo.environment["COAP_TEST_LOG"].flatMap(Logger.Level.init(rawValue:))
    logger.logLevel = level ?? .critical
    return logger
}()

func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count + 8)
    while bytes.count < count {
        withUnsafeBytes(of: generator.next() as UInt64) { bytes.append(contentsOf: $0) }
    }
    return Array(bytes.prefix(count))
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() {
            return true
        }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// A bare UDP socket on 127.0.0.1 speaking CoAP by hand, for protocol-level checks.
final class RawPeer: @unchecked Sendable {  // used by one test task at a time
    private let fd: Int32

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ToolFailure(description: "socket: errno \(errno)") }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            throw ToolFailure(description: "bind: errno \(errno)")
        }
    }

    deinit {
        close(fd)
    }

    func send(_ datagram: [UInt8], to port: Int) throws {
        var address = loopback(port: port)
        let sent = datagram.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard sent == datagram.count else { throw ToolFailure(description: "sendto: errno \(errno)") }
    }

    /// The next datagram, or `nil` after `timeout`.
    func receive(timeout: Duration = .seconds(20)) async throws -> [UInt8]? {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 2048)
        while ContinuousClock.now < deadline {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count >= 0 {
                return Array(buffer.prefix(count))
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

/// The fixed header of a CoAP message.
struct RawHeader: Equatable {
    /// 0 CON, 1 NON, 2 ACK, 3 RST.
    let type: UInt8
    let code: UInt8
    let messageID: UInt16
    let token: [UInt8]

    init(type: UInt8, code: UInt8, messageID: UInt16, token: [UInt8]) {
        self.type = type
        self.code = code
        self.messageID = messageID
        self.token = token
    }

    init?(_ datagram: [UInt8]) {
        guard datagram.count >= 4, datagram[0] >> 6 == 1 else { return nil }
        let tokenLength = Int(datagram[0] & 0x0F)
        guard datagram.count >= 4 + tokenLength else { return nil }
        type = (datagram[0] >> 4) & 0x3
        code = datagram[1]
        messageID = UInt16(datagram[2]) << 8 | UInt16(datagram[3])
        token = Array(datagram[4..<4 + tokenLength])
    }

    /// The payload after the 0xFF marker (options are not parsed).
    static func payload(_ datagram: [UInt8]) -> [UInt8] {
        guard let marker = datagram.firstIndex(of: 0xFF) else { return [] }
        return Array(datagram[(marker + 1)...])
    }
}
