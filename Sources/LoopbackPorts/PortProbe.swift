import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Ports of 127.0.0.1 for servers started by the demo, the benches and the tests.
///
/// One implementation for the whole process: the test targets run in one process
/// next to the gateways they start, and two helpers with their own "handed out" lists
/// could give the same port to a wrapper test's broker and to a gateway.
public enum PortProbe {
    /// True when something accepts TCP connections on host:port.
    public static func accepts(host: String = "127.0.0.1", port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopbackAddress(port: port)
        inet_pton(AF_INET, host, &address.sin_addr)
        return withSocketAddress(&address) { connect(fd, $0, $1) } == 0
    }

    /// A TCP port on 127.0.0.1 nobody listens on now and that this process has not handed
    /// out before: concurrent tests would otherwise be told the same port by the kernel.
    public static func freePort() -> Int {
        while true {
            let port = kernelAssignedPort(type: Int32(SOCK_STREAM.rawValue))
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
    }

    private static let handedOut = Mutex<Set<Int>>([])

    /// The same for UDP (CoAP): a port no socket is bound to now, never handed out twice,
    /// and below the kernel's ephemeral range: libcoap binds client sockets with
    /// SO_REUSEADDR, so a client could otherwise be given a server's port.
    public static func freeUDPPort() -> Int {
        while true {
            // 20000-25999: ``udpPortBelowEphemeralRange()`` picks from the 6000 ports below
            // the ephemeral range, so the two never hand out the same port.
            let candidate = Int.random(in: 20_000..<26_000)
            guard bindable(port: candidate, type: Int32(SOCK_DGRAM.rawValue)) else { continue }
            if handedOutUDP.withLock({ $0.insert(candidate).inserted }) { return candidate }
        }
    }

    private static let handedOutUDP = Mutex<Set<Int>>([])

    /// A UDP port of 127.0.0.1 the kernel just handed out: bound to port 0, read, closed.
    public static func ephemeralUDPPort() -> Int {
        kernelAssignedPort(type: Int32(SOCK_DGRAM.rawValue))
    }

    /// A free UDP port below the kernel's ephemeral range, for tests that bind the same
    /// port again after a stop. libcoap sets SO_REUSEADDR on its client sockets too, so a
    /// client of a parallel test may be auto-bound to a port our server holds, and keep it
    /// after the server let go; ephemeral ports are never chosen below the range.
    public static func udpPortBelowEphemeralRange() -> Int {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let lowest = range.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } ?? 32768
        for _ in 0..<200 {
            // The 6000 ports below the ephemeral range; ``freeUDPPort()`` stays below
            // 26000, so a port released between a stop and a start here is not handed
            // to a gateway meanwhile.
            let port = Int.random(in: max(1024, lowest - 6_000)..<lowest)
            if bindable(port: port, type: Int32(SOCK_DGRAM.rawValue)) { return port }
        }
        return ephemeralUDPPort()
    }

    /// Two consecutive free UDP ports (coap-server-openssl listens on port and port + 1);
    /// `nil` when none were found.
    public static func udpPortPair() -> Int? {
        for _ in 0..<50 {
            let port = ephemeralUDPPort()
            guard port < 65535 else { continue }
            if bindable(port: port + 1, type: Int32(SOCK_DGRAM.rawValue)) { return port }
        }
        return nil
    }

    /// 127.0.0.1:`port` as a socket address.
    public static func loopbackAddress(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    /// Calls `body` with `address` as the `sockaddr` pointer and length the socket calls take.
    public static func withSocketAddress<T>(
        _ address: inout sockaddr_in, _ body: (UnsafeMutablePointer<sockaddr>, socklen_t) throws -> T
    ) rethrows -> T {
        try withUnsafeMutablePointer(to: &address) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    private static func bindable(port: Int, type: Int32) -> Bool {
        let fd = socket(AF_INET, type, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopbackAddress(port: port)
        return withSocketAddress(&address) { bind(fd, $0, $1) } == 0
    }

    private static func kernelAssignedPort(type: Int32) -> Int {
        let fd = socket(AF_INET, type, 0)
        defer { close(fd) }
        var address = loopbackAddress(port: 0)
        _ = withSocketAddress(&address) { bind(fd, $0, $1) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withSocketAddress(&address) { pointer, _ in getsockname(fd, pointer, &length) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
