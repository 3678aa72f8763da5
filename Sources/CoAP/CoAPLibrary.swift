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
    private static let fallbackLogger = Logger(label: "CoAP")

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

    fileprivate static func threadLogger() -> Logger {
        guard let pointer = pthread_getspecific(threadLoggerKey) else { return fallbackLogger }
        return Unmanaged<LoggerBox>.fromOpaque(pointer).takeUnretainedValue().logger
    }
}

/// A logger with a stable address, for the per-thread pointer.
final class LoggerBox: Sendable {
    let logger: Logger

    init(_ logger: Logger) {
        self.logger = logger
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
    CoAPLibrary.threadLogger().log(
        level: CoAPLibrary.loggerLevel(forCoAP: level), Logger.Message(stringLiteral: text),
        metadata: ["coap.source": "libcoap"])
}
