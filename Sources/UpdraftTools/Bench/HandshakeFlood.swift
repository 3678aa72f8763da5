import CoAP
import Foundation
import Logging
import LoopbackPorts
import Synchronization
import UpdraftApp
import UpdraftCore

#if canImport(Glibc)
import Glibc
#endif

/// `updraft bench handshake`: a CoAP server with DTLS-PSK (the gateway's server, in this
/// process) under a flood of DTLS ClientHellos and garbage datagrams from changing source
/// ports, while libcoap's `coap-client-openssl` makes real PSK handshakes one after the
/// other. Prints how long each legitimate request took and how many log lines the flood
/// made.
public struct HandshakeFlood: Sendable {
    public struct Options: Sendable {
        /// ClientHellos sent to the DTLS port.
        public var hellos = 100_000
        /// Garbage datagrams sent to the plain CoAP port.
        public var garbage = 0
        /// Datagrams per second, both kinds together.
        public var rate = 10_000
        /// Datagrams sent from one source port before the next port.
        public var perPort = 4
        public var maxHandshakes = 100
        public var handshakeTimeout: Duration = .seconds(10)
        public var clientPath = "/usr/bin/coap-client-openssl"

        public init(
            hellos: Int = 100_000, garbage: Int = 0, rate: Int = 10_000, perPort: Int = 4, maxHandshakes: Int = 100,
            handshakeTimeout: Duration = .seconds(10)
        ) {
            (self.hellos, self.garbage, self.rate, self.perPort) = (hellos, garbage, rate, perPort)
            (self.maxHandshakes, self.handshakeTimeout) = (maxHandshakes, handshakeTimeout)
        }
    }

    public struct Result: Sendable {
        public var hellosSent = 0
        public var garbageSent = 0
        public var floodSeconds = 0.0
        /// Seconds each legitimate request took (`nil`: it failed), in order.
        public var handshakes: [Double?] = []
        public var logLines = 0
        public var logBytes = 0
        public var worstSeconds: Double? {
            handshakes.contains(nil) ? nil : handshakes.compactMap { $0 }.max()
        }
    }

    let options: Options
    let logger: Logger

    public init(options: Options, logger: Logger) { (self.options, self.logger) = (options, logger) }

    public func run(report: @escaping @Sendable (String, Double) -> Void = { _, _ in }) async throws -> Result {
        let counter = LogCounter()
        var serverLogger = Logger(label: "updraft.coap") { _ in CountingLogHandler(counter: counter) }
        serverLogger.logLevel = .notice
        let (plain, secure) = (PortProbe.freeUDPPort(), PortProbe.freeUDPPort())
        var configuration = CoAPServer.Configuration(
            host: "127.0.0.1", port: plain, securePort: secure,
            psk: CoAPServer.PSK(keyForIdentity: { $0 == "bench-1" ? Array("bench-secret".utf8) : nil }))
        configuration.maxHandshakes = options.maxHandshakes
        configuration.handshakeTimeout = options.handshakeTimeout
        let server = CoAPServer(configuration: configuration, logger: serverLogger)
        try server.addResource(
            CoAPResource(path: "hello", handlers: [.get: .immediate { _ in CoAPResponse(payload: Array("hi".utf8)) }]))
        try server.start()
        defer { server.stop() }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("updraft-handshake-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        // Before the flood: the reference time of one handshake.
        var result = Result()
        result.handshakes.append(try await handshake(port: secure, directory: directory))
        let flood = Flooder(
            hellos: options.hellos, garbage: options.garbage, rate: options.rate, perPort: options.perPort,
            securePort: secure, plainPort: plain)
        let started = ContinuousClock.now
        let sender = Thread { flood.run() }
        sender.start()
        while !flood.finished {
            report("flood", flood.fraction)
            result.handshakes.append(try await handshake(port: secure, directory: directory))
        }
        result.floodSeconds = (ContinuousClock.now - started).seconds
        (result.hellosSent, result.garbageSent) = flood.sent
        // Summaries of repeated libcoap messages come at the end of their interval.
        try await Task.sleep(for: .seconds(11))
        (result.logLines, result.logBytes) = counter.totals
        return result
    }

    /// Seconds for one PSK GET by `coap-client-openssl`, or `nil` when it got no answer.
    private func handshake(port: Int, directory: URL) async throws -> Double? {
        let output = directory.appendingPathComponent("client-\(UUID().uuidString).log").path
        let started = ContinuousClock.now
        let child = try ChildProcess(
            executable: options.clientPath,
            arguments: ["-B", "20", "-u", "bench-1", "-k", "bench-secret", "coaps://127.0.0.1:\(port)/hello"],
            outputFile: output)
        guard await child.waitForExit(timeout: .seconds(30)) else {
            child.stop()
            return nil
        }
        let seconds = (ContinuousClock.now - started).seconds
        // coap-client exits 0 even on errors: the body is the proof.
        let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        return printed.contains("hi") ? seconds : nil
    }

}

/// A DTLS 1.2 ClientHello record offering the PSK suites, without cookie: what a device
/// sends first, and what a flood sends from spoofed addresses.
public enum DTLSClientHello {
    public static func record(random: [UInt8]) -> [UInt8] {
        var body: [UInt8] = [0xFE, 0xFD] + random.prefix(32)
        body += [0x00]  // session id
        body += [0x00]  // cookie
        let suites: [UInt16] = [0xC0A8, 0x00A8, 0x00AE, 0x008C]
        body += bigEndian(UInt64(suites.count * 2), 2)
        for suite in suites { body += bigEndian(UInt64(suite), 2) }
        body += [0x01, 0x00]  // compression: null
        let length = bigEndian(UInt64(body.count), 3)
        // Handshake header: ClientHello, length, message_seq 0, fragment offset 0, fragment length.
        let handshake: [UInt8] = [0x01] + length + [0x00, 0x00] + [0x00, 0x00, 0x00] + length + body
        // Record header: handshake, DTLS 1.2, epoch 0, sequence 0, length.
        return [0x16, 0xFE, 0xFD, 0x00, 0x00, 0, 0, 0, 0, 0, 0] + bigEndian(UInt64(handshake.count), 2) + handshake
    }

    private static func bigEndian(_ value: UInt64, _ bytes: Int) -> [UInt8] {
        (0..<bytes).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }
}

/// Sends the flood from a thread of its own, paced, changing source port every `perPort`
/// datagrams (a new socket each time, as spoofed sources would look).
public final class Flooder: Sendable {
    private let hellos: Int
    private let garbage: Int
    private let rate: Int
    private let perPort: Int
    private let securePort: Int
    private let plainPort: Int
    private let counts = Mutex((hellos: 0, garbage: 0, done: false))

    public init(hellos: Int, garbage: Int, rate: Int, perPort: Int, securePort: Int, plainPort: Int) {
        self.hellos = hellos
        self.garbage = garbage
        self.rate = max(1, rate)
        self.perPort = max(1, perPort)
        self.securePort = securePort
        self.plainPort = plainPort
    }

    public var finished: Bool { counts.withLock { $0.done } }
    public var sent: (Int, Int) { counts.withLock { ($0.hellos, $0.garbage) } }
    public var fraction: Double {
        let (h, g) = sent
        return Double(h + g) / Double(max(1, hellos + garbage))
    }

    public func stop() { counts.withLock { $0.done = true } }

    /// Blocks until everything is sent or ``stop()``.
    public func run() {
        let total = hellos + garbage
        let started = ContinuousClock.now
        var fd: Int32 = -1
        var random = SystemRandomNumberGenerator()
        var hello = DTLSClientHello.record(random: (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) })
        var index = 0
        var sentHellos = 0
        var sentGarbage = 0
        defer {
            if fd >= 0 { close(fd) }
            counts.withLock { $0.done = true }
        }
        while index < total {
            if index % 256 == 0 {
                if counts.withLock({ $0.done }) { return }
                counts.withLock { $0.hellos = sentHellos; $0.garbage = sentGarbage }
                // Pacing: no faster than `rate`.
                let due = started + .seconds(Double(index) / Double(rate))
                let now = ContinuousClock.now
                if due > now { Thread.sleep(forTimeInterval: (due - now).seconds) }
            }
            if index % perPort == 0 {
                if fd >= 0 { close(fd) }
                fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
                if fd < 0 { return }
            }
            // Hellos and garbage interleaved in proportion.
            let isHello = sentGarbage >= garbage || (sentHellos < hellos && sentHellos * garbage <= sentGarbage * hellos)
            if isHello {
                hello[30] = UInt8(truncatingIfNeeded: index)  // a byte of the random: each hello differs
                LoopbackUDP.send(fd, hello, port: securePort)
                sentHellos += 1
            } else {
                let junk = (0..<24).map { _ in UInt8.random(in: 0...255, using: &random) }
                LoopbackUDP.send(fd, [0x40 | (junk[0] & 0x0F), 0xFF] + junk, port: plainPort)
                sentGarbage += 1
            }
            index += 1
        }
        counts.withLock { $0.hellos = sentHellos; $0.garbage = sentGarbage }
    }
}

/// Counts the lines (and their rendered bytes) a logger would write.
final class LogCounter: Sendable {
    private let state = Mutex((lines: 0, bytes: 0))
    func add(_ bytes: Int) { state.withLock { $0.lines += 1; $0.bytes += bytes } }
    var totals: (Int, Int) { state.withLock { ($0.lines, $0.bytes) } }
}

struct CountingLogHandler: LogHandler {
    let counter: LogCounter
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .notice

    subscript(metadataKey key: String) -> Logger.Metadata.Value? { get { metadata[key] } set { metadata[key] = newValue } }

    func log(event: LogEvent) {
        // About what a plain-text line would take: time, level, label, message, metadata.
        let meta = (event.metadata ?? [:]).merging(metadata) { new, _ in new }
        counter.add(40 + "\(event.message)".utf8.count + meta.description.utf8.count)
    }
}
