import Foundation
import LoopbackPorts
import UpdraftCore

#if canImport(Glibc)
import Glibc
#endif

/// `updraft health`: whether a gateway serves this data directory, read from outside it
/// without taking anything from it (the container's HEALTHCHECK; issue 11's /healthz will
/// answer from inside). It checks that
/// 1. a live process holds the data directory's lock (`updraft.lock`, per /proc/locks);
/// 2. with the managed broker: the mosquitto of `<data_dir>/broker` runs (its pid file and
///    command line) and accepts TCP where the gateway connects to it (127.0.0.1 on
///    `mqtt.broker.plain_port` when set, else `mqtt.broker.tls_port`);
/// 3. with CoAP on: UDP sockets are bound on `coap.port` and `coap.secure_port` (those not 0).
public enum GatewayHealth {
    /// What was found, one line per check; throws `gateway_unhealthy` naming the first failure.
    public static func check(_ c: UpdraftConfiguration) throws -> [String] {
        var found: [String] = []
        let lockPath = URL(fileURLWithPath: c.dataDirectory).appendingPathComponent(DataDirectoryLock.fileName).path
        guard let holder = lockHolder(lockPath) else {
            throw UpdraftError("gateway_unhealthy", "No gateway holds \(lockPath): start `updraft serve` on this data directory.")
        }
        found.append("gateway: pid \(holder) holds \(lockPath)")
        if !c.mqtt.broker.external {
            let directory = c.path("broker")
            guard let broker = ManagedBroker.runningPID(directory: directory) else {
                throw UpdraftError("gateway_unhealthy", "The managed mosquitto of \(directory) is not running; see \(directory)/mosquitto.log.")
            }
            let listener = c.brokerOptions(clientID: "health")
            let (host, port) = (listener.host, listener.port)
            guard PortProbe.accepts(host: host, port: port) else {
                throw UpdraftError("gateway_unhealthy", "mosquitto (pid \(broker)) does not accept connections on \(host):\(port).")
            }
            found.append("broker: pid \(broker) accepts \(host):\(port)")
        }
        if c.coap.enabled {
            let bound = boundUDPPorts()
            for port in [c.coap.port, c.coap.securePort] where port != 0 {
                guard bound.contains(port) else {
                    throw UpdraftError("gateway_unhealthy", "Nothing is bound to CoAP UDP port \(port); see the gateway's log.")
                }
                found.append("coap: UDP \(port) bound")
            }
        }
        return found
    }

    /// The pid of a live process holding an flock on `path` (read from /proc/locks, so
    /// the check never takes the lock a starting gateway needs).
    static func lockHolder(_ path: String) -> Int32? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let locks = procFileText("/proc/locks")
        for line in locks.split(separator: "\n") {
            // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] == "FLOCK", let pid = Int32(fields[4]), pid > 0,
                fields[5].split(separator: ":").last.flatMap({ UInt64($0) }) == UInt64(info.st_ino),
                kill(pid, 0) == 0
            else { continue }
            return pid
        }
        return nil
    }

    /// Local ports of the UDP sockets in /proc/net/udp and udp6.
    static func boundUDPPorts() -> Set<Int> {
        var ports = Set<Int>()
        for file in ["/proc/net/udp", "/proc/net/udp6"] {
            let text = procFileText(file)
            for line in text.split(separator: "\n").dropFirst() {
                // "  12: 0100007F:1633 00000000:0000 07 ..."
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 2, let port = fields[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) }) else { continue }
                ports.insert(port)
            }
        }
        return ports
    }
}
