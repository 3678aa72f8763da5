import Configuration
import Mosquitto
import UpdraftCore
import UpdraftSettings
import UpdraftWire

/// The MQTT side of the gateway: the broker connection, the device topic tree, chunk
/// limits and flow, and the event feed. Keys under `mqtt` in Config/updraft.yaml.
public struct MQTTSettings: Sendable {
    public var topicPrefix: String = "updraft"
    public var clientID: String = "updraft-gateway"
    public var username: String = "updraft-gateway"
    public var password: String = ""
    /// Bytes a device may put in one control message (announce, progress, download request).
    public var maxControlBytes: Int = 4096
    /// Device messages received and not yet handled; beyond it libmosquitto's thread waits.
    public var inboxCapacity: Int = 4096
    public var chunk = ChunkLimits()
    /// Windows in flight per device, chunk bytes in flight overall, download allowance.
    public var flow = ChunkFlowLimits()
    public var events = MQTTEventFeed.Settings()
    public var broker = Broker()

    public struct Broker: Sendable {
        /// false: Updraft starts and supervises its own mosquitto. true: connect to `host:port`.
        public var external: Bool = false
        /// The external broker's address (with `external: true`).
        public var host: String = "127.0.0.1"
        public var port: Int = 1883
        /// The managed broker's listeners. TLS with a password on `tlsHost:tlsPort`; mutual
        /// TLS (the client certificate's CN is the username) on `tlsHost:mtlsPort`; plain
        /// MQTT on `127.0.0.1:plainPort` only. 0 turns a listener off.
        public var tlsHost: String = "127.0.0.1"
        public var tlsPort: Int = 8883
        public var mtlsPort: Int = 8884
        public var plainPort: Int = 0
        /// The mosquitto binary for the managed broker; empty means search PATH and /usr/sbin.
        public var mosquittoPath: String = ""
        /// Template of the managed broker's configuration.
        public var template: String = "Config/mosquitto.conf.template"
        /// How the managed broker checks who connects.
        public var authentication: Authentication = .passwordFile
        public var tls = TLS()
        public init() {}
    }

    public enum Authentication: String, Sendable, CaseIterable {
        /// Every client proves its username with a password (mosquitto's password file),
        /// and its username is its client id.
        case passwordFile = "password_file"
        /// Anyone on loopback may connect under any name (the ACL still applies).
        case none
    }

    public struct TLS: Sendable {
        public var enabled: Bool = false
        public var caFile: String = ""
        public var certFile: String = ""
        public var keyFile: String = ""
        public var insecure: Bool = false
        public init() {}
    }

    public init() {}

    /// Reads the keys of the `mqtt` scope; absent keys keep the defaults above.
    public init(reader: ConfigKeys) {
        let d = MQTTSettings()
        topicPrefix = reader.string(forKey: "topic_prefix", default: d.topicPrefix)
        clientID = reader.string(forKey: "client_id", default: d.clientID)
        username = reader.string(forKey: "username", default: d.username)
        password = reader.string(forKey: "password", isSecret: true, default: d.password)
        maxControlBytes = reader.int(forKey: "max_control_bytes", default: d.maxControlBytes, in: 256...1_048_576)
        inboxCapacity = reader.int(forKey: "inbox_capacity", default: d.inboxCapacity, in: 16...1_048_576)
        chunk = ChunkLimits(reader: reader.scoped(to: "chunk"))
        flow = ChunkFlowLimits(reader: reader.scoped(to: "chunk"))
        events = MQTTEventFeed.Settings(reader: reader.scoped(to: "events"))
        broker = Broker(reader: reader.scoped(to: "broker"))
    }

    /// What a key's type and range alone cannot say.
    public func validate() throws(UpdraftError) {
        // Scalars, not Characters: "+" followed by a combining mark is one Character but
        // still a wildcard to the broker, and a C string ends at U+0000 (found by fuzzing).
        guard !topicPrefix.isEmpty, !topicPrefix.unicodeScalars.contains(where: { "+#\u{0}".unicodeScalars.contains($0) }) else {
            throw UpdraftError.configInvalid("mqtt.topic_prefix is \(topicPrefix.debugDescription); it must be a non-empty topic without +, # or NUL.")
        }
        let c = chunk
        guard 16 <= c.min, c.min <= c.preferred, c.preferred <= c.max, c.max <= 256 * 1024, c.maxCount >= 1 else {
            throw UpdraftError.configInvalid("mqtt.chunk needs 16 <= min <= preferred <= max <= 262144 and max_count >= 1 (got min \(c.min), preferred \(c.preferred), max \(c.max), max_count \(c.maxCount)).")
        }
        guard flow.windowsPerDevice >= 1, flow.bytesInFlight >= 1 else {
            throw UpdraftError.configInvalid("mqtt.chunk.windows_per_device and mqtt.chunk.bytes_in_flight must be at least 1 (got \(flow.windowsPerDevice) and \(flow.bytesInFlight)).")
        }
        guard (1...65535).contains(broker.port) else {
            throw UpdraftError.configInvalid("mqtt.broker.port must be 1...65535, not \(broker.port).")
        }
        try broker.validateListeners()
    }

    /// Today's device protocol under this prefix and control-message limit.
    public var dialect: UpdraftDialectV1 { UpdraftDialectV1(prefix: topicPrefix, maxControlBytes: maxControlBytes) }

    /// The gateway's connection: a persistent session, so that reports devices send while
    /// the gateway restarts wait at the broker.
    public var clientOptions: MosquittoOptions {
        var options = MosquittoOptions(clientID: clientID)
        options.host = broker.host
        options.port = broker.port
        options.username = username
        options.password = password.isEmpty ? nil : password
        options.cleanSession = false
        options.inboxCapacity = inboxCapacity
        let tls = broker.tls
        if tls.enabled {
            options.tls = MosquittoOptions.TLSOptions(
                caFile: tls.caFile.isEmpty ? nil : tls.caFile, certFile: tls.certFile.isEmpty ? nil : tls.certFile,
                keyFile: tls.keyFile.isEmpty ? nil : tls.keyFile, insecure: tls.insecure)
        }
        return options
    }
}

extension MQTTSettings.Broker {
    /// Reads the keys of the `mqtt.broker` scope.
    public init(reader: ConfigKeys) {
        let d = Self()
        external = reader.bool(forKey: "external", default: d.external)
        host = reader.string(forKey: "host", default: d.host)
        port = reader.int(forKey: "port", default: d.port, in: 1...65535)
        tlsHost = reader.string(forKey: "tls_host", default: d.tlsHost)
        tlsPort = reader.int(forKey: "tls_port", default: d.tlsPort, in: 0...65535)
        mtlsPort = reader.int(forKey: "mtls_port", default: d.mtlsPort, in: 0...65535)
        plainPort = reader.int(forKey: "plain_port", default: d.plainPort, in: 0...65535)
        mosquittoPath = reader.string(forKey: "mosquitto_path", default: d.mosquittoPath)
        template = reader.string(forKey: "template", default: d.template)
        authentication = MQTTSettings.Authentication(
            rawValue: reader.string(forKey: "authentication", default: d.authentication.rawValue, oneOf: MQTTSettings.Authentication.allCases.map(\.rawValue))
        ) ?? d.authentication
        tls = MQTTSettings.TLS(reader: reader.scoped(to: "tls"))
    }
}

extension MQTTSettings.Broker {
    /// The managed broker's listener ports that are on (not 0).
    public var listenerPorts: [Int] { [tlsPort, mtlsPort, plainPort].filter { $0 != 0 } }

    /// The gateway connects with a password: the managed broker needs the TLS or the plain
    /// listener, and no two listeners may share a port.
    func validateListeners() throws(UpdraftError) {
        guard !external else { return }
        guard tlsPort != 0 || plainPort != 0 else {
            throw UpdraftError.configInvalid("mqtt.broker.tls_port and mqtt.broker.plain_port are both 0: the gateway connects to its managed broker with a password on one of them. Set tls_port (8883) or plain_port.")
        }
        guard Set(listenerPorts).count == listenerPorts.count else {
            throw UpdraftError.configInvalid("mqtt.broker.tls_port, mtls_port and plain_port must differ (got \(tlsPort), \(mtlsPort), \(plainPort)).")
        }
    }
}

extension MQTTSettings.TLS {
    /// Reads the keys of the `mqtt.broker.tls` scope.
    public init(reader: ConfigKeys) {
        let d = Self()
        enabled = reader.bool(forKey: "enabled", default: d.enabled)
        caFile = reader.string(forKey: "ca_file", default: d.caFile)
        certFile = reader.string(forKey: "cert_file", default: d.certFile)
        keyFile = reader.string(forKey: "key_file", default: d.keyFile)
        insecure = reader.bool(forKey: "insecure", default: d.insecure)
    }
}

extension ChunkLimits {
    /// Reads `min`, `max`, `preferred` and `max_count` of the `mqtt.chunk` scope (their
    /// order is checked by ``MQTTSettings/validate()``).
    public init(reader: ConfigKeys) {
        let d = Self()
        self.init(
            min: reader.int(forKey: "min", default: d.min), max: reader.int(forKey: "max", default: d.max),
            preferred: reader.int(forKey: "preferred", default: d.preferred),
            maxCount: reader.int(forKey: "max_count", default: d.maxCount))
    }
}

extension ChunkFlowLimits {
    /// Reads the flow keys of the `mqtt.chunk` scope.
    public init(reader: ConfigKeys) {
        let d = Self()
        self.init(
            windowsPerDevice: reader.int(forKey: "windows_per_device", default: d.windowsPerDevice),
            bytesInFlight: reader.int(forKey: "bytes_in_flight", default: d.bytesInFlight),
            downloadImagesAtOnce: reader.int(forKey: "download_allowance_images", default: d.downloadImagesAtOnce, in: 1...1_000),
            downloadRefill: reader.duration(forKey: "download_allowance_refill", default: d.downloadRefill, in: 1...86_400))
    }
}

extension MQTTEventFeed.Settings {
    /// Reads the keys of the `mqtt.events` scope.
    public init(reader: ConfigKeys) {
        self.init()
        window = reader.int(forKey: "window", default: window, in: 1...65_535)
    }
}
