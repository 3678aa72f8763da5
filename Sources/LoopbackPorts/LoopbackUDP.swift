#if canImport(Glibc)
import Glibc
#endif

/// Datagrams to 127.0.0.1 from a socket of the caller's.
public enum LoopbackUDP {
    /// Sends `datagram` from `fd` to 127.0.0.1:`port`; returns what `sendto` returned.
    @discardableResult
    public static func send(_ fd: Int32, _ datagram: [UInt8], port: Int) -> Int {
        var address = PortProbe.loopbackAddress(port: port)
        return datagram.withUnsafeBytes { bytes in
            PortProbe.withSocketAddress(&address) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, $1) }
        }
    }
}
