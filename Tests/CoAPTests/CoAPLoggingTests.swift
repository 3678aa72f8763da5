import Logging
import Testing
import UpdraftTestSupport
import LoopbackPorts

@testable import CoAP

/// libcoap's levels are syslog's (RFC 5424 severities).
enum Syslog {
    static let emergency: Int32 = 0
    static let alert: Int32 = 1
    static let critical: Int32 = 2
    static let error: Int32 = 3
    static let warning: Int32 = 4
    static let notice: Int32 = 5
    static let info: Int32 = 6
    static let debug: Int32 = 7
}

@Suite("libcoap log levels map to swift-log levels", .timeLimit(.minutes(3)))
struct CoAPLoggingTests {
    @Test("each syslog level of libcoap has a swift-log level")
    func coapToLogger() {
        #expect(CoAPLibrary.loggerLevel(forCoAP: Syslog.emergency) == .critical)
        // libcoap 4.3.1 logs a peer's reset at LOG_ALERT: a warning, not an emergency.
        #expect(CoAPLibrary.loggerLevel(forCoAP: Syslog.alert) == .notice)
        #expect(CoAPLibrary.loggerLevel(forCoAP: Syslog.critical) == .critical)
        #expect(CoAPLibrary.loggerLevel(forCoAP: Syslog.error) == .error)
        #expect(CoAPLibrary.loggerLevel(forCoAP: Syslog.warning) == .warning)
        #expect(CoAPLibrary.loggerLevel(forCoAP: Syslog.notice) == .notice)
        #expect(CoAPLibrary.loggerLevel(forCoAP: Syslog.info) == .info)
        #expect(CoAPLibrary.loggerLevel(forCoAP: Syslog.debug) == .debug)
        #expect(CoAPLibrary.loggerLevel(forCoAP: Syslog.debug + 2) == .trace)
    }

    @Test("a logger's level sets how much libcoap formats")
    func loggerToCoAP() {
        #expect(CoAPLibrary.coapLevel(for: .trace) == Syslog.debug)
        #expect(CoAPLibrary.coapLevel(for: .debug) == Syslog.debug)
        #expect(CoAPLibrary.coapLevel(for: .info) == Syslog.info)
        #expect(CoAPLibrary.coapLevel(for: .notice) == Syslog.notice)
        #expect(CoAPLibrary.coapLevel(for: .warning) == Syslog.warning)
        #expect(CoAPLibrary.coapLevel(for: .error) == Syslog.error)
        #expect(CoAPLibrary.coapLevel(for: .critical) == Syslog.critical)
        for level in Logger.Level.allCases {
            // What a level asks libcoap for comes back at that level or above.
            #expect(CoAPLibrary.loggerLevel(forCoAP: CoAPLibrary.coapLevel(for: level)) >= level)
        }
    }

    @Test("libcoap's messages reach the logger of the loop that logged them")
    func forwarding() async throws {
        let (server, port, recorder) = try recordingServer(
            CoAPResource(path: "x", handlers: [.get: .immediate { _ in CoAPResponse() }]))
        // A reset for a message the server never sent: libcoap logs "got RST".
        try sendDatagrams([[0x70, 0x00, 0x12, 0x34]], to: port)
        #expect(await eventually { recorder.messages.contains { $0.contains("got RST") } }, "\(recorder.messages)")
        server.stop()
        let reset = recorder.entries.first { $0.message.contains("got RST") }
        #expect(reset?.level == .notice)
        #expect(reset?.source == "libcoap")
    }

    @Test("a client that stops observing deregisters, and answers the last response without a reset")
    func cancelledObservationIsNotReset() async throws {
        let gets = Locked(0)
        let (server, port, recorder) = try recordingServer(
            CoAPResource(
                path: "state", observable: true,
                handlers: [.get: .immediate { _ in
                    gets.withLock { $0 += 1 }
                    return CoAPResponse(payload: Array("v".utf8))
                }]))
        let client = CoAPClient(logger: testLogger)
        let session = try await client.session(host: "127.0.0.1", port: port)
        for try await first in session.observe("state") {
            #expect(first.observe != nil)
            break  // ends the observation: the client sends the deregistering GET
        }
        // The deregistering GET reaches the handler (registration + deregistration)...
        #expect(await eventually { gets.withLock { $0 } >= 2 }, "the server saw \(gets.withLock { $0 }) GETs")
        // ...and its answer is acknowledged, not reset.
        try await Task.sleep(for: .milliseconds(300))
        #expect(!recorder.messages.contains { $0.contains("got RST") }, "\(recorder.messages)")
        client.shutdown()
        server.stop()
    }
}

/// A started server on a free port whose logs (libcoap's included) are recorded from `.info`.
private func recordingServer(_ resource: CoAPResource) throws -> (CoAPServer, Int, RecordingLogHandler.Records) {
    let recorder = RecordingLogHandler.Records()
    var logger = Logger(label: "recording") { _ in RecordingLogHandler(records: recorder) }
    logger.logLevel = .info
    let port = PortProbe.ephemeralUDPPort()
    let server = CoAPServer(configuration: .init(host: "127.0.0.1", port: port), logger: logger)
    try server.addResource(resource)
    try server.start()
    return (server, port, recorder)
}

/// Keeps what is logged, for assertions.
struct RecordingLogHandler: LogHandler {
    final class Records: Sendable {
        struct Entry: Sendable {
            let level: Logger.Level
            let message: String
            let source: String?
        }

        private let entriesLock = Locked<[Entry]>([])

        func append(_ entry: Entry) {
            entriesLock.withLock { $0.append(entry) }
        }

        var entries: [Entry] { entriesLock.withLock { $0 } }
        var messages: [String] { entries.map(\.message) }
    }

    let records: Records
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let source = event.metadata?["coap.source"].map { "\($0)" }
        records.append(.init(level: event.level, message: "\(event.message)", source: source))
    }
}

@Suite("repeated libcoap messages are collapsed with a count")
struct CoAPLogRepeatsTests {
    @Test("the first messages of a shape pass, the rest are counted once per interval")
    func collapse() {
        var repeats = LogRepeats()
        let start = ContinuousClock.now
        var shown = 0
        for port in 0..<1_000 {
            let (show, summaries) = repeats.admit(
                "*  127.0.0.1:5683 <-> 127.0.0.1:\(40_000 + port) UDP : discard malformed PDU mid=0x\(String(port, radix: 16))",
                level: .warning, now: start)
            #expect(summaries.isEmpty)
            if show { shown += 1 }
        }
        #expect(shown == LogRepeats.burst)
        // Another message is not held back by the flood of the first.
        #expect(repeats.admit("got RST for mid=0x1234", level: .notice, now: start).0)
        #expect(repeats.flush(now: start + .seconds(1)).isEmpty)
        let summaries = repeats.flush(now: start + LogRepeats.interval)
        #expect(summaries.count == 1)
        #expect(summaries.first?.suppressed == 1_000 - LogRepeats.burst)
        #expect(summaries.first?.level == .warning)
        // A new interval starts afresh, and its summary comes once.
        #expect(repeats.admit("discard malformed PDU", level: .warning, now: start + .seconds(11)).0)
        #expect(repeats.flush(now: start + .seconds(30)).isEmpty)
    }

    @Test("a garbage flood from changing ports writes a handful of lines")
    func garbageFlood() async throws {
        let (server, port, recorder) = try recordingServer(
            CoAPResource(path: "x", handlers: [.get: .immediate { _ in CoAPResponse() }]))
        defer { server.stop() }
        // Each datagram from a new socket: a new source port, a new libcoap session.
        for index in 0..<2_000 {
            try sendDatagrams([[0x40, 0x01, UInt8(index >> 8), UInt8(index & 0xFF), 0xF5, 0x00, 0x01]], to: port)
        }
        #expect(await eventually { recorder.messages.contains { $0.contains("malformed") } }, "\(recorder.messages.prefix(5))")
        try await Task.sleep(for: .milliseconds(500))
        let lines = recorder.entries.filter { $0.source == "libcoap" }.count
        #expect(lines <= 2 * LogRepeats.burst, "\(lines) lines: \(recorder.messages.prefix(10))")
    }
}
