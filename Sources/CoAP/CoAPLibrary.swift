import CCoAP
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Process-wide libcoap state: `coap_startup`, the log handler and the log level.
///
/// libcoap has one log handler and one level for the whole process. The handler
/// forwards each message to the logger of the event loop running on the calling
/// thread (every libcoap call runs on a loop thread); the level is the most
/// verbose level any loop's logger asked for, so libcoap does not format
/// messages nobody will see.
enum CoAPLibrary {
    private static let started: Bool = {
        coap_startup()
        coap_set_log_handler(forwardLog)
        coap_set_log_level(CCOAP_LOG_WARNING)
        coap_dtls_set_log_level(CCOAP_LOG_WARNING)
        return true
    }()

    /// The most verbose libcoap level requested so far.
    private static let level = Mutex<Int32>(CCOAP_LOG_WARNING)

    /// Logger for the rare message logged outside a loop thread.
    private static let fallbackLogger = LoggerBox(Logger(label: "CoAP"))

    /// Starts libcoap once and raises its log level to what `logger` wants.
    static func prepare(for logger: Logger) {
        precondition(started)
        let wanted = coapLevel(for: logger.logLevel)
        level.withLock { current in
            guard wanted > current else { return }
            current = wanted
            coap_set_log_level(wanted)
            coap_dtls_set_log_level(wanted)
        }
    }

    // MARK: Level mapping (syslog levels: 0 emergency ... 7 debug)

    /// The swift-log level of a libcoap message.
    ///
    /// One deviation from the syslog reading: libcoap 4.3.1 logs at LOG_ALERT
    /// when a peer answers with a reset ("got RST for mid=...") and when a
    /// socket option cannot be set. A reset is how a peer says it forgot an exchange
    /// (an observer that rebooted): routine, so notice, not a reason to page anyone.
    static func loggerLevel(forCoAP level: Int32) -> Logger.Level {
        switch level {
        case CCOAP_LOG_ALERT: .notice
        case ...CCOAP_LOG_CRIT: .critical
        case CCOAP_LOG_ERR: .error
        case CCOAP_LOG_WARNING: .warning
        case CCOAP_LOG_NOTICE: .notice
        case CCOAP_LOG_INFO: .info
        case CCOAP_LOG_DEBUG: .debug
        default: .trace  // COAP_LOG_CIPHERS and other extra verbosity
        }
    }

    /// The libcoap level that produces the messages `level` shows.
    static func coapLevel(for level: Logger.Level) -> Int32 {
        switch level {
        case .trace, .debug: CCOAP_LOG_DEBUG
        case .info: CCOAP_LOG_INFO
        case .notice: CCOAP_LOG_NOTICE
        case .warning: CCOAP_LOG_WARNING
        case .error: CCOAP_LOG_ERR
        case .critical: CCOAP_LOG_CRIT
        }
    }

    // MARK: Per-thread logger

    /// Key of the current loop's logger box; set by each loop thread.
    private static let threadLoggerKey: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key, nil)
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        return key
    }()

    /// Makes libcoap messages of the calling thread go to `box` (nil: fallback).
    /// The caller keeps `box` alive while it is set.
    static func setThreadLogger(_ box: LoggerBox?) {
        let pointer = box.map { Unmanaged.passUnretained($0).toOpaque() }
        pthread_setspecific(threadLoggerKey, pointer)
    }

    fileprivate static func threadLoggerBox() -> LoggerBox {
        guard let pointer = pthread_getspecific(threadLoggerKey) else { return fallbackLogger }
        return Unmanaged<LoggerBox>.fromOpaque(pointer).takeUnretainedValue()
    }
}

/// A logger with a stable address, for the per-thread pointer; it collapses
/// repeated libcoap messages (see ``LogRepeats``).
final class LoggerBox: Sendable {
    let logger: Logger
    private let repeats = Mutex(LogRepeats())

    init(_ logger: Logger) {
        self.logger = logger
    }

    /// Logs a libcoap message unless it repeats one logged often in this interval.
    /// Debug and info lines, asked for to diagnose, all pass.
    func log(_ level: Logger.Level, _ text: String, now: ContinuousClock.Instant = .now) {
        guard level >= .notice else {
            logger.log(level: level, Logger.Message(stringLiteral: text), metadata: ["coap.source": "libcoap"])
            return
        }
        let (show, summaries) = repeats.withLock { $0.admit(text, level: level, now: now) }
        emit(summaries)
        if show {
            logger.log(level: level, Logger.Message(stringLiteral: text), metadata: ["coap.source": "libcoap"])
        }
    }

    /// Logs the counts of messages held back in an interval that has ended.
    func flushRepeats(now: ContinuousClock.Instant = .now) {
        emit(repeats.withLock { $0.flush(now: now) })
    }

    private func emit(_ summaries: [LogRepeats.Summary]) {
        for summary in summaries {
            logger.log(
                level: summary.level, "libcoap repeated a message; only the first ones were logged",
                metadata: [
                    "coap.source": "libcoap", "coap.message": "\(summary.text)",
                    "coap.repeats": "\(summary.suppressed)", "coap.interval": "\(LogRepeats.interval)",
                ])
        }
    }
}

/// Keeps libcoap from writing a line per datagram of a flood: per interval, the first
/// ``burst`` messages of each shape (the text with its numbers and addresses blanked) are
/// logged, the rest only counted and summarised once with the count.
struct LogRepeats {
    struct Summary {
        var text: String
        var level: Logger.Level
        var suppressed: Int
    }

    static let interval: Duration = .seconds(10)
    static let burst = 3
    /// Shapes followed per interval; messages of further shapes count as one.
    static let maxShapes = 64

    private struct Entry {
        var seen = 0
        var last: String
        var level: Logger.Level
    }

    private var entries: [String: Entry] = [:]
    private var intervalEnd: ContinuousClock.Instant?
    private var suppressed = 0

    mutating func admit(_ text: String, level: Logger.Level, now: ContinuousClock.Instant) -> (Bool, [Summary]) {
        let summaries = flush(now: now)
        if intervalEnd == nil { intervalEnd = now + Self.interval }
        var shape = Self.shape(of: text)
        if entries[shape] == nil && entries.count >= Self.maxShapes { shape = "" }
        entries[shape, default: Entry(last: text, level: level)].seen += 1
        entries[shape]!.last = text
        let show = entries[shape]!.seen <= Self.burst
        if !show { suppressed += 1 }
        return (show, summaries)
    }

    /// The summaries of an ended interval, once.
    mutating func flush(now: ContinuousClock.Instant) -> [Summary] {
        guard let end = intervalEnd, now >= end else { return [] }
        let summaries = suppressed == 0 ? [] : entries.values.filter { $0.seen > Self.burst }.map {
            Summary(text: $0.last, level: $0.level, suppressed: $0.seen - Self.burst)
        }
        entries.removeAll(keepingCapacity: true)
        intervalEnd = nil
        suppressed = 0
        return summaries
    }

    /// `text` with each run of digits (and hex digits after "0x") made "#".
    static func shape(of text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        var inNumber = false
        for character in text {
            if character.isHexDigit && (character.isNumber || inNumber) {
                if !inNumber { result.append("#") }
                inNumber = true
            } else if inNumber && character == "x" && result.hasSuffix("#") {
                continue
            } else {
                inNumber = false
                result.append(character)
            }
        }
        return result
    }
}

/// libcoap's log handler: one line per call, ending in a newline.
private func forwardLog(_ level: coap_log_t, _ message: UnsafePointer<CChar>?) {
    guard let message else { return }
    var text = String(cString: message)
    while let last = text.last, last.isWhitespace {
        text.removeLast()
    }
    guard !text.isEmpty else { return }
    CoAPLibrary.threadLoggerBox().log(CoAPLibrary.loggerLevel(forCoAP: level), text)
}
