import CCoAP

#if canImport(Glibc)
import Glibc
#endif

/// A failure of a ``CoAPServer`` or ``CoAPClient``: what failed, and what to do about it.
///
/// libcoap reports most failures as `0` or `NULL` and logs the reason (through
/// the ``CoAPServer``'s or ``CoAPClient``'s logger); `errno` is kept where the
/// failing call sets it (sockets).
public struct CoAPError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure, for programs to react to. Compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidArgument
            case bindFailed
            case dtlsUnavailable
            case libraryFailure
            case resourceConflict
            case resolveFailed
            case notRunning
            case timeout
            case sessionFailed
            case sendFailed
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        public var description: String { base.rawValue }

        /// A configuration value or argument is out of range (port, block size, path...).
        public static let invalidArgument = Code(.invalidArgument)
        /// A UDP socket could not be bound (port in use, address not local).
        public static let bindFailed = Code(.bindFailed)
        /// libcoap was built without DTLS, or the PSK setup was rejected.
        public static let dtlsUnavailable = Code(.dtlsUnavailable)
        /// libcoap could not allocate or set up an object (context, session, PDU).
        public static let libraryFailure = Code(.libraryFailure)
        /// A resource with the same path is already registered.
        public static let resourceConflict = Code(.resourceConflict)
        /// A host name did not resolve to an IPv4 or IPv6 address.
        public static let resolveFailed = Code(.resolveFailed)
        /// The server is stopped, or the client or its event loop is shut down.
        public static let notRunning = Code(.notRunning)
        /// No response arrived in time.
        public static let timeout = Code(.timeout)
        /// The (D)TLS session failed or closed: wrong PSK identity or key, or the peer went away.
        public static let sessionFailed = Code(.sessionFailed)
        /// The request could not be sent, or the peer answered with a reset or not at all.
        public static let sendFailed = Code(.sendFailed)
    }

    public let code: Code
    /// The operation that failed, e.g. `"start"` or `"GET fw/image"`.
    public let operation: String
    /// What happened and, where we know, what to do about it.
    public let message: String

    public init(code: Code, operation: String, message: String) {
        (self.code, self.operation, self.message) = (code, operation, message)
    }

    public var description: String {
        "\(operation): \(message) (\(code))"
    }
}

extension CoAPError {
    /// The one place a libcoap result becomes a Swift error (compare swift-nio's
    /// `SystemCallHelpers`): libcoap returns `1` for success and `0` for failure.
    /// `errno` is read at once, before anything else can overwrite it.
    @inline(__always)
    static func check(
        _ result: Int32, _ code: Code, _ operation: @autoclosure () -> String,
        _ advice: @autoclosure () -> String
    ) throws(CoAPError) {
        if result == 0 {
            let error = errno
            throw CoAPError(code: code, operation: operation(), advice: advice(), errno: error)
        }
    }

    /// As ``check(_:_:_:_:)`` for calls that return `NULL` on failure.
    @inline(__always)
    static func check<Pointer>(
        _ result: Pointer?, _ code: Code, _ operation: @autoclosure () -> String,
        _ advice: @autoclosure () -> String
    ) throws(CoAPError) -> Pointer {
        guard let result else {
            let error = errno
            throw CoAPError(code: code, operation: operation(), advice: advice(), errno: error)
        }
        return result
    }

    /// `advice`, followed by the system's reason when `errno` is set.
    init(code: Code, operation: String, advice: String, errno: Int32) {
        var message = advice
        if errno != 0 {
            message += " (\(String(cString: strerror(errno))))"
        }
        self.init(code: code, operation: operation, message: message)
    }

    /// Throws `.dtlsUnavailable` when this libcoap has no DTLS; `instead` says what to do
    /// without it.
    static func checkDTLSSupported(_ operation: String, instead: String) throws(CoAPError) {
        guard coap_dtls_is_supported() == 0 else { return }
        throw CoAPError(
            code: .dtlsUnavailable, operation: operation,
            message: "this libcoap has no DTLS support; link libcoap-3-openssl or \(instead)")
    }

    static func notRunning(_ operation: String, _ what: String) -> CoAPError {
        CoAPError(code: .notRunning, operation: operation, message: "\(what); create a new one to continue")
    }

    static func invalid(_ operation: String, _ message: String) -> CoAPError {
        CoAPError(code: .invalidArgument, operation: operation, message: message)
    }
}
