import Configuration
import Foundation
import Logging
import SystemPackage
import UpdraftCore
import UpdraftMQTT
import UpdraftWire

/// Everything Updraft reads from Config/updraft.yaml and the environment. Each key is
/// documented in Config/updraft.yaml; `UPDRAFT_<KEY>` overrides it (dots and dashes
/// become underscores, e.g. `UPDRAFT_MQTT_BROKER_PORT=1884`).
public struct UpdraftConfiguration: Sendable {
    /// Where the store, keys, firmware images and the managed broker's files live.
    public var dataDirectory: String = "data"
    public var logLevel: Logger.Level = .info

    /// SQLite file; empty means `<data_dir>/updraft.sqlite`.
    public var sqlitePath: String = ""
    public var maxImageBytes: Int64 = 64 << 20
    /// Release signing key (Ed25519, raw 32 bytes base64); empty means `<data_dir>/keys/release.key`.
    public var signingKeyPath: String = ""
    /// Announcements and refused reports one device may make the gateway record per minute.
    public var deviceEventsPerMinute: Int = 30

    public var mqtt = MQTT()
    public var coap = CoAPSettings()

    /// The CoAP device API (Sources/UpdraftCoAP).
    public struct CoAPSettings: Sendable {
        public var enabled: Bool = true
        /// Listen address; 127.0.0.1 keeps it on this machine, 0.0.0.0 serves the network.
        public var host: String = "127.0.0.1"
        /// `coap://` port; 0 disables plain CoAP.
        public var port: Int = 5683
        /// `coaps://` (DTLS-PSK) port; 0 disables DTLS.
        public var securePort: Int = 5684
        /// `<device id> <key>` per line; empty means `<data_dir>/coap-psk.txt`.
        public var pskFile: String = ""
        /// DTLS with certificates on `securePort` (all three set, or none): the CA that signs
        /// device certificates (a device's id is its certificate's CN), and the gateway's
        /// own certificate and key, PEM.
        public var caFile: String = ""
        public var certificateFile: String = ""
        public var privateKeyFile: String = ""
        /// Let plain-CoAP peers name their device with `?d=<id>`. For development only.
        public var allowUnauthenticated: Bool = false
        /// Seconds a CoAP device that announced no lifetime may stay silent before it is
        /// taken for offline.
        public var defaultLifetime: Int = 86_400
        /// DTLS peers past the cookie exchange that may be mid-handshake at once.
        public var maxHandshakes: Int = 100
        /// Seconds a DTLS handshake past the cookie exchange may take before it is dropped.
        public var handshakeTimeout: Int = 10
    }

    public struct MQTT: Sendable {
        public var topicPrefix: String = "updraft"
        public var clientID: String = "updraft-gateway"
        public var username: String = "updraft-gateway"
        public var password: String = ""
        public var chunk = ChunkLimits()
        /// Windows in flight per device and chunk bytes in flight overall.
        public var flow = ChunkFlowLimits()
        /// Bytes a device may put in one control message (announce, progress, download request).
        public var maxControlBytes: Int = 4096
        public var broker = Broker()
    }

    public struct Broker: Sendable {
        /// false: Updraft starts and supervises its own mosquitto. true: connect to `host:port`.
        public var external: Bool = false
        public var host: String = "127.0.0.1"
        public var port: Int = 1883
        /// The mosquitto binary for the managed broker; empty means search PATH and /usr/sbin.
        public var mosquittoPath: String = ""
        /// Template of the managed broker's configuration.
        public var template: String = "Config/mosquitto.conf.template"
        public var tls = TLS()
    }

    public struct TLS: Sendable {
        public var enabled: Bool = false
        public var caFile: String = ""
        public var certFile: String = ""
        public var keyFile: String = ""
        public var insecure: Bool = false
    }

    public init() {}

    /// Keys in the YAML file and UPDRAFT_* variables that this build does not read
    /// (warned about, not refused).
    public var warnings: [String] = []

    /// Reads every key, falling back to the defaults above for keys that are absent.
    /// A value of the wrong type or out of range throws `config_invalid` naming the key
    /// and the value (see `ConfigKeys`).
    public init(config: ConfigReader) throws(UpdraftError) {
        try self.init(keys: ConfigKeys(config))
    }

    /// `config` reads like `ConfigReader` (same method names), so a key is added the usual
    /// way; give ints their range with `in:`.
    init(keys config: ConfigKeys) throws(UpdraftError) {
        let d = UpdraftConfiguration()
        dataDirectory = config.string(forKey: "data_dir", default: d.dataDirectory)
        let levels = Logger.Level.allCases.map(\.rawValue)
        logLevel = Logger.Level(rawValue: config.string(forKey: "log_level", default: d.logLevel.rawValue, oneOf: levels)) ?? d.logLevel
        sqlitePath = config.string(forKey: "store.sqlite.path", default: d.sqlitePath)
        maxImageBytes = Int64(config.int(forKey: "firmware.max_image_bytes", default: Int(d.maxImageBytes), in: 1...(1 << 32)))
        signingKeyPath = config.string(forKey: "keys.signing_key", default: d.signingKeyPath)
        deviceEventsPerMinute = config.int(forKey: "devices.events_per_minute", default: d.deviceEventsPerMinute)

        let c = config.scoped(to: "coap")
        coap.enabled = c.bool(forKey: "enabled", default: d.coap.enabled)
        coap.host = c.string(forKey: "host", default: d.coap.host)
        coap.port = c.int(forKey: "port", default: d.coap.port, in: 0...65535)
        coap.securePort = c.int(forKey: "secure_port", default: d.coap.securePort, in: 0...65535)
        coap.pskFile = c.string(forKey: "psk_file", default: d.coap.pskFile)
        coap.caFile = c.string(forKey: "ca_file", default: d.coap.caFile)
        coap.certificateFile = c.string(forKey: "certificate_file", default: d.coap.certificateFile)
        coap.privateKeyFile = c.string(forKey: "private_key_file", default: d.coap.privateKeyFile)
        coap.allowUnauthenticated = c.bool(forKey: "allow_unauthenticated", default: d.coap.allowUnauthenticated)
        coap.defaultLifetime = c.int(forKey: "default_lifetime", default: d.coap.defaultLifetime, in: 1...315_360_000)
        coap.maxHandshakes = c.int(forKey: "max_handshakes", default: d.coap.maxHandshakes, in: 1...100_000)
        coap.handshakeTimeout = c.int(forKey: "handshake_timeout", default: d.coap.handshakeTimeout, in: 1...3_600)

        let m = config.scoped(to: "mqtt")
        mqtt.topicPrefix = m.string(forKey: "topic_prefix", default: d.mqtt.topicPrefix)
        mqtt.clientID = m.string(forKey: "client_id", default: d.mqtt.clientID)
        mqtt.username = m.string(forKey: "username", default: d.mqtt.username)
        mqtt.password = m.string(forKey: "password", isSecret: true, default: d.mqtt.password)
        mqtt.maxControlBytes = m.int(forKey: "max_control_bytes", default: d.mqtt.maxControlBytes, in: 256...1_048_576)
        mqtt.chunk = ChunkLimits(
            min: m.int(forKey: "chunk.min", default: d.mqtt.chunk.min),
            max: m.int(forKey: "chunk.max", default: d.mqtt.chunk.max),
            preferred: m.int(forKey: "chunk.preferred", default: d.mqtt.chunk.preferred),
            maxCount: m.int(forKey: "chunk.max_count", default: d.mqtt.chunk.maxCount))
        mqtt.flow = ChunkFlowLimits(
            windowsPerDevice: m.int(forKey: "chunk.windows_per_device", default: d.mqtt.flow.windowsPerDevice),
            bytesInFlight: m.int(forKey: "chunk.bytes_in_flight", default: d.mqtt.flow.bytesInFlight))

        let b = m.scoped(to: "broker")
        mqtt.broker.external = b.bool(forKey: "external", default: d.mqtt.broker.external)
        mqtt.broker.host = b.string(forKey: "host", default: d.mqtt.broker.host)
        mqtt.broker.port = b.int(forKey: "port", default: d.mqtt.broker.port, in: 1...65535)
        mqtt.broker.mosquittoPath = b.string(forKey: "mosquitto_path", default: d.mqtt.broker.mosquittoPath)
        mqtt.broker.template = b.string(forKey: "template", default: d.mqtt.broker.template)
        let t = b.scoped(to: "tls")
        mqtt.broker.tls.enabled = t.bool(forKey: "enabled", default: false)
        mqtt.broker.tls.caFile = t.string(forKey: "ca_file", default: "")
        mqtt.broker.tls.certFile = t.string(forKey: "cert_file", default: "")
        mqtt.broker.tls.keyFile = t.string(forKey: "key_file", default: "")
        mqtt.broker.tls.insecure = t.bool(forKey: "insecure", default: false)
        try config.check()
    }

    /// Environment (`UPDRAFT_…`) over the YAML file over the defaults.
    /// - Parameter file: a YAML file; nil means Config/updraft.yaml when it exists.
    public static func load(file: String?) async throws -> UpdraftConfiguration {
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider().prefixKeys(with: "updraft")
        ]
        let path = file ?? "Config/updraft.yaml"
        var yaml: String?
        if file != nil || FileManager.default.fileExists(atPath: path) {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw UpdraftError("config_missing", "Configuration file '\(path)' does not exist. Pass an existing file to --config, or omit it to use the defaults.")
            }
            guard !isFolder.boolValue else {
                throw UpdraftError("config_invalid", "--config '\(path)' is a folder; pass the YAML file itself (for example \(path)/updraft.yaml).")
            }
            do {
                yaml = try String(contentsOfFile: path, encoding: .utf8)
                providers.append(try await FileProvider<YAMLSnapshot>(filePath: FilePath(path)))
            } catch {
                throw UpdraftError("config_invalid", "Configuration file '\(path)' could not be read: \(error). Compare it with Config/updraft.yaml.")
            }
        }
        let keys = ConfigKeys(ConfigReader(providers: providers))
        var loaded = try UpdraftConfiguration(keys: keys)
        if let yaml { loaded.warnings = try keys.unknownKeys(inYAML: yaml, file: path) }
        loaded.warnings += keys.unknownVariables(in: ProcessInfo.processInfo.environment)
        try loaded.validate()
        return loaded
    }

    public var resolvedSQLitePath: String { sqlitePath.isEmpty ? path("updraft.sqlite") : sqlitePath }
    public var resolvedSigningKeyPath: String { signingKeyPath.isEmpty ? path("keys/release.key") : signingKeyPath }

    /// What a key's type and range alone cannot say (`ConfigKeys` checks those while reading).
    public func validate() throws(UpdraftError) {
        guard !dataDirectory.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw UpdraftError("config_invalid", "data_dir is empty. Set it to the folder for the store, keys and images (the default is data).")
        }
        guard !mqtt.topicPrefix.isEmpty, !mqtt.topicPrefix.contains(where: { "+#".contains($0) }) else {
            throw UpdraftError("config_invalid", "mqtt.topic_prefix is '\(mqtt.topicPrefix)'; it must be a non-empty topic without + or #.")
        }
        let c = mqtt.chunk
        guard 16 <= c.min, c.min <= c.preferred, c.preferred <= c.max, c.max <= 256 * 1024, c.maxCount >= 1 else {
            throw UpdraftError("config_invalid", "mqtt.chunk needs 16 <= min <= preferred <= max <= 262144 and max_count >= 1 (got min \(c.min), preferred \(c.preferred), max \(c.max), max_count \(c.maxCount)).")
        }
        guard mqtt.flow.windowsPerDevice >= 1, mqtt.flow.bytesInFlight >= 1 else {
            throw UpdraftError("config_invalid", "mqtt.chunk.windows_per_device and mqtt.chunk.bytes_in_flight must be at least 1 (got \(mqtt.flow.windowsPerDevice) and \(mqtt.flow.bytesInFlight)).")
        }
        guard deviceEventsPerMinute >= 1 else {
            throw UpdraftError("config_invalid", "devices.events_per_minute must be at least 1, not \(deviceEventsPerMinute).")
        }
        guard (1...65535).contains(mqtt.broker.port) else {
            throw UpdraftError("config_invalid", "mqtt.broker.port must be 1...65535, not \(mqtt.broker.port).")
        }
        for (key, port) in [("coap.port", coap.port), ("coap.secure_port", coap.securePort)] where !(0...65535).contains(port) {
            throw UpdraftError("config_invalid", "\(key) must be 0 (off) or 1...65535, not \(port).")
        }
        guard maxImageBytes > 0 else { throw UpdraftError("config_invalid", "firmware.max_image_bytes must be positive.") }
        let pkiFiles = [coap.caFile, coap.certificateFile, coap.privateKeyFile]
        guard pkiFiles.allSatisfy(\.isEmpty) || pkiFiles.allSatisfy({ !$0.isEmpty }) else {
            throw UpdraftError(
                "config_invalid",
                "coap.ca_file, coap.certificate_file and coap.private_key_file go together: set all three for DTLS with certificates, or none.")
        }
        guard coap.defaultLifetime > 0 else {
            throw UpdraftError("config_invalid", "coap.default_lifetime must be a positive number of seconds (86400 is a day).")
        }
        guard coap.maxHandshakes > 0 else {
            throw UpdraftError("config_invalid", "coap.max_handshakes must be positive (100 is the default), not \(coap.maxHandshakes).")
        }
        guard coap.handshakeTimeout > 0 else {
            throw UpdraftError("config_invalid", "coap.handshake_timeout must be a positive number of seconds (10 is the default), not \(coap.handshakeTimeout).")
        }
    }

    /// A path inside the data directory.
    public func path(_ relative: String) -> String {
        URL(fileURLWithPath: dataDirectory).appendingPathComponent(relative).path
    }

    public var imagesDirectory: String { path("firmware") }
    public var resolvedPSKFile: String { coap.pskFile.isEmpty ? path("coap-psk.txt") : coap.pskFile }
    /// Today's device protocol under the configured topic prefix and control-message limit.
    public var dialect: UpdraftDialectV1 { UpdraftDialectV1(prefix: mqtt.topicPrefix, maxControlBytes: mqtt.maxControlBytes) }
}
