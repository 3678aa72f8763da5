import CMosquitto

/// MQTT quality of service. QoS 2 is deliberately not offered: the gateway
/// protocol is idempotent and QoS 2 doubles the round trips.
public enum QoS: Int32, Sendable, Hashable {
    case atMostOnce = 0
    case atLeastOnce = 1
}

/// Connection settings of one ``MosquittoClient``. Defaults suit a broker on localhost.
public struct MosquittoOptions: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 1883
    /// MQTT client identifier; must be unique per broker.
    public var clientID: String
    /// `false` asks the broker to keep subscriptions and queued QoS 1 messages across connections.
    public var cleanSession: Bool = true
    public var username: String?
    public var password: String?
    /// Seconds between keep-alive pings when idle; 0 disables keep-alive.
    public var keepAlive: Int = 30
    public var tls: TLSOptions?
    /// Published by the broker when the connection ends without a DISCONNECT.
    public var will: Will?
    public var reconnect: ReconnectPolicy = .init(initialDelay: .milliseconds(100), maxDelay: .seconds(5))
    /// MQTT 3.1.1 by default; MQTT 5 (for shared subscriptions, message expiry) on request.
    public var protocolVersion: ProtocolVersion = .v311
    /// Messages buffered for the consumer of ``MosquittoClient/messages`` before the
    /// client stops reading its socket, which makes TCP push back on the broker.
    public var inboxCapacity: Int = 1024

    public init(clientID: String, host: String = "127.0.0.1", port: Int = 1883) {
        (self.clientID, self.host, self.port) = (clientID, host, port)
    }

    /// The MQTT version spoken with the broker.
    public enum ProtocolVersion: Sendable, Hashable {
        /// MQTT 3.1.1.
        case v311
        /// MQTT 5. Refusals carry MQTT 5 reason codes (e.g. 0x86, 0x87).
        case v5

        var libmosquittoValue: Int32 {
            switch self {
            case .v311: MQTT_PROTOCOL_V311
            case .v5: MQTT_PROTOCOL_V5
            }
        }
    }

    public struct TLSOptions: Sendable {
        /// PEM file of trusted CA certificates; this or `caPath` is required.
        public var caFile: String?
        /// Directory of trusted CA certificates (hashed names, see `openssl rehash`).
        public var caPath: String?
        /// Client certificate for mutual TLS (PEM), with `keyFile`.
        public var certFile: String?
        public var keyFile: String?
        /// Skip the host name check of the server certificate. Tests only.
        public var insecure: Bool = false
        /// e.g. `"tlsv1.2"` or `"tlsv1.3"`; `nil` lets libmosquitto choose.
        public var tlsVersion: String?

        public init(
            caFile: String? = nil, caPath: String? = nil, certFile: String? = nil, keyFile: String? = nil,
            insecure: Bool = false, tlsVersion: String? = nil
        ) {
            (self.caFile, self.caPath, self.certFile, self.keyFile) = (caFile, caPath, certFile, keyFile)
            (self.insecure, self.tlsVersion) = (insecure, tlsVersion)
        }
    }

    public struct Will: Sendable {
        public var topic: String
        public var payload: [UInt8]
        public var qos: QoS
        public var retain: Bool

        public init(topic: String, payload: [UInt8], qos: QoS = .atLeastOnce, retain: Bool = false) {
            (self.topic, self.payload, self.qos, self.retain) = (topic, payload, qos, retain)
        }
    }
}

/// Exponential backoff with jitter between connection attempts after an
/// unexpected disconnect: `initialDelay`, doubling up to `maxDelay`, each delay
/// drawn uniformly from its upper half.
public struct ReconnectPolicy: Sendable, Hashable {
    public var initialDelay: Duration
    public var maxDelay: Duration
    /// `false`: a lost connection stays lost (``MosquittoClient/connect(timeout:)`` still retries until its timeout).
    public var isEnabled: Bool

    public init(initialDelay: Duration, maxDelay: Duration) {
        self.initialDelay = initialDelay
        self.maxDelay = max(initialDelay, maxDelay)
        self.isEnabled = true
    }

    public static let disabled: ReconnectPolicy = {
        var policy = ReconnectPolicy(initialDelay: .milliseconds(100), maxDelay: .seconds(2))
        policy.isEnabled = false
        return policy
    }()

    /// Backoff of `connect()` retries when reconnecting is disabled.
    static let connectRetry = ReconnectPolicy(initialDelay: .milliseconds(100), maxDelay: .seconds(2))

    /// The delay before attempt number `attempt` (0-based) of a series.
    func delay(attempt: Int) -> Duration {
        var delay = initialDelay
        var step = 0
        while step < attempt && delay < maxDelay && delay > .zero {
            delay *= 2
            step += 1
        }
        delay = min(delay, maxDelay)
        return delay * Double.random(in: 0.5...1.0)
    }
}
