import Foundation
import Logging
import LoopbackPorts
import UpdraftTestSupport

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

/// Runs `coap-client-openssl` to completion. It exits 0 even when the request
/// failed, so callers check its output and the file it wrote.
func runCoAPClient(_ arguments: [String], directory: URL, timeout: Duration = .seconds(60)) async throws -> (
    status: Int32, output: String
) {
    let tool = try SpawnedProcess(CoAPTools.client, arguments, directory: directory)
    defer { tool.stop() }
    let status = try await tool.waitForExit(timeout: timeout)
    return (status, tool.output)
}

/// Sends raw datagrams to 127.0.0.1:`port` (hostile input).
func sendDatagrams(_ datagrams: [[UInt8]], to port: Int) throws {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { throw ToolFailure(description: "socket: errno \(errno)") }
    defer { close(fd) }
    for datagram in datagrams {
        try sendDatagram(datagram, from: fd, to: port)
    }
}

// MARK: - Helpers

/// COAP_TEST_LOG=debug shows the server's, client's and libcoap's logs.
let testLogger = makeTestLogger(label: "CoAPTests", levelVariable: "COAP_TEST_LOG")

func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count + 8)
    while bytes.count < count {
        withUnsafeBytes(of: generator.next() as UInt64) { bytes.append(contentsOf: $0) }
    }
    return Array(bytes.prefix(count))
}

/// Sends one datagram from socket `fd` to 127.0.0.1:`port`.
func sendDatagram(_ datagram: [UInt8], from fd: Int32, to port: Int) throws {
    let sent = LoopbackUDP.send(fd, datagram, port: port)
    guard sent == datagram.count else { throw ToolFailure(description: "sendto: errno \(errno)") }
}

/// A bare UDP socket on 127.0.0.1 speaking CoAP by hand, for protocol-level checks.
final class RawPeer: @unchecked Sendable {  // used by one test task at a time
    private let fd: Int32

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ToolFailure(description: "socket: errno \(errno)") }
        var address = PortProbe.loopbackAddress(port: 0)
        let bound = PortProbe.withSocketAddress(&address) { bind(fd, $0, $1) }
        guard bound == 0 else {
            close(fd)
            throw ToolFailure(description: "bind: errno \(errno)")
        }
    }

    deinit {
        close(fd)
    }

    func send(_ datagram: [UInt8], to port: Int) throws {
        try sendDatagram(datagram, from: fd, to: port)
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

    /// The payload after the 0xFF marker. The options before it are skipped by their
    /// lengths: a message ID, token or option value may hold a 0xFF byte too.
    static func payload(_ datagram: [UInt8]) -> [UInt8] {
        guard datagram.count >= 4 else { return [] }
        var index = 4 + Int(datagram[0] & 0x0F)
        // An option's delta or length nibble of 13 or 14 takes 1 or 2 more bytes.
        func extended(_ nibble: UInt8) -> Int? {
            switch nibble {
            case 13: defer { index += 1 }; return index < datagram.count ? Int(datagram[index]) + 13 : nil
            case 14: defer { index += 2 }; return index + 1 < datagram.count ? (Int(datagram[index]) << 8 | Int(datagram[index + 1])) + 269 : nil
            case 15: return nil
            default: return Int(nibble)
            }
        }
        while index < datagram.count {
            let byte = datagram[index]
            if byte == 0xFF { return Array(datagram[(index + 1)...]) }
            index += 1
            guard extended(byte >> 4) != nil, let length = extended(byte & 0x0F) else { return [] }
            index += length
        }
        return []
    }
}
