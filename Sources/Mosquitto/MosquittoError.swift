import CMosquitto

#if canImport(Glibc)
import Glibc
#endif

/// A libmosquitto failure, or a broker's refusal of a connection.
///
/// `code` is a `MOSQ_ERR_*` value; `operation` names the call that failed;
/// `message` says what happened and, where we know, what to do about it.
public struct MosquittoError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A `MOSQ_ERR_*` code, e.g. `MOSQ_ERR_CONN_REFUSED` (5) or `MOSQ_ERR_TIMEOUT` (27).
    public let code: Int32
    /// The operation that failed, e.g. `"connect"` or `"mosquitto_publish"`.
    public let operation: String
    /// Human readable explanation.
    public let message: String
    /// The CONNACK return code when the broker refused the connection (MQTT 3.1.1: 1...5).
    public let connackCode: Int32?

    public init(code: Int32, operation: String, message: String, connackCode: Int32? = nil) {
        self.code = code
        self.operation = operation
        self.message = message
        self.connackCode = connackCode
    }

    public var description: String {
        "\(operation): \(message) (MOSQ_ERR \(code))"
    }

    /// The broker answered the CONNECT with a refusal.
    public var isConnectionRefused: Bool { code == MOSQ_ERR_CONN_REFUSED.rawValue }

    /// The broker refused the credentials or the client is not allowed to connect.
    public var isNotAuthorized: Bool {
        switch connackCode {
        case 4, 5, 0x86, 0x87: return true  // 3.1.1: bad user name or password / not authorised; 5.0 equivalents
        default: return code == MOSQ_ERR_AUTH.rawValue || code == MOSQ_ERR_ACL_DENIED.rawValue
        }
    }

    /// No CONNACK (or other awaited reply) arrived in time.
    public var isTimeout: Bool { code == MOSQ_ERR_TIMEOUT.rawValue }

    /// The client has no connection to the broker (not connected yet, lost, or disconnected).
    public var isNotConnected: Bool {
        code == MOSQ_ERR_NO_CONN.rawValue || code == MOSQ_ERR_CONN_LOST.rawValue
    }
}

extension MosquittoError {
    /// The one place a libmosquitto return code becomes a Swift error
    /// (compare swift-nio's `SystemCallHelpers`).
    @inline(__always)
    static func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(MosquittoError) {
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            throw MosquittoError(rc: rc, operation: operation())
        }
    }

    /// Wraps a non-success `MOSQ_ERR_*` code. Must be called right after the
    /// failing call: `MOSQ_ERR_ERRNO` reads `errno`.
    init(rc: Int32, operation: String) {
        var text = String(cString: mosquitto_strerror(rc))
        if rc == MOSQ_ERR_ERRNO.rawValue {
            text = String(cString: strerror(errno))
        }
        self.init(code: rc, operation: operation, message: text)
    }

    /// The broker refused the connection with CONNACK `connack`.
    static func refused(
        connack: Int32, host: String, port: Int, protocolVersion: MosquittoOptions.ProtocolVersion = .v311
    ) -> MosquittoError {
        // MQTT 5 answers with a reason code (0x80 and up), 3.1.1 with a CONNACK return code (1...5).
        let reason = String(
            cString: protocolVersion == .v5 ? mosquitto_reason_string(connack) : mosquitto_connack_string(connack))
        var message = "broker \(host):\(port) refused the connection: \(reason)"
        switch connack {
        case 4, 5, 0x86, 0x87: message += "; check the username, password and the broker's ACL"
        case 2, 0x85: message += "; the client ID is rejected, choose another"
        case 3, 0x88: message += "; the broker is unavailable, try again later"
        default: break
        }
        return MosquittoError(
            code: MOSQ_ERR_CONN_REFUSED.rawValue, operation: "connect", message: message, connackCode: connack
        )
    }

    static func notConnected(_ operation: String, _ detail: String) -> MosquittoError {
        MosquittoError(code: MOSQ_ERR_NO_CONN.rawValue, operation: operation, message: detail)
    }
}
