import Configuration
import Foundation
import Logging
import UpdraftCore
import UpdraftCoAP
import UpdraftHTTP
import UpdraftMQTT
import UpdraftWire
import UpdraftSettings
import UpdraftStore

/// Everything Updraft reads from Config/updraft.yaml and the environment. Each key is
/// documented in Config/updraft.yaml; `UPDRAFT_<KEY>` overrides it (dots and dashes
/// become underscores, e.g. `UPDRAFT_MQTT_BROKER_PORT=1884`). Each module's settings
/// type reads its own keys (`init(reader:)` beside the type); this one only puts them
/// together and reads the keys of the application itself.
public struct UpdraftConfiguration: Sendable {
    /// Where the store, keys, firmware images and the managed broker's files live.
    public var dataDirectory: String = "data"
    public var logLevel: Logger.Level = .info
    /// `text` (for people) or `json` (one object per line, for log collectors; ``JSONLogHandler``).
    public var logFormat: LogFormat = .text
    /// Release signing key (Ed25519, raw 32 bytes base64); empty means `<data_dir>/keys/release.key`.
    public var signingKeyPath: String = ""
    /// Folder of further trusted release public keys (`*.pub`, base64); empty means
    /// `<data_dir>/keys/trusted`. The gateway takes signed manifests of these keys and of
    /// the signing key's public half.
    public var trustedKeysDirectory: String = ""

    public var store = StoreSettings()
    public var firmware = FirmwareSettings()
    public var engine = EngineSettings()
    public var gateway = GatewaySettings()
    public var mqtt = MQTTSettings()
    public var coap = CoAPSettings()
    /// The fleet CA, the managed broker's TLS certificate, device certificates.
    public var pki = PKISettings()
    public var http = HTTPSettings()
    /// Webhook delivery (README "Events for backends").
    public var webhooks = WebhookSettings()

    /// SQLite file; empty means `<data_dir>/updraft.sqlite`.
    public var sqlitePath: String {
        get { store.sqlitePath }
        set { store.sqlitePath = newValue }
    }
    public var maxImageBytes: Int64 {
        get { firmware.maxImageBytes }
        set { firmware.maxImageBytes = newValue }
    }
    /// Announcements and refused reports one device may make the gateway record per minute.
    public var deviceEventsPerMinute: Int {
        get { engine.deviceEventsPerMinute }
        set { engine.deviceEventsPerMinute = newValue }
    }

    public init() {}

    /// Keys in the YAML file and UPDRAFT_* variables that this build does not read
    /// (warned about, not refused).
    public var warnings: [String] = []

    /// Reads every key, falling back to the defaults for keys that are absent. A value of
    /// the wrong type or out of range throws `config_invalid` naming the key and the value
    /// (see `ConfigKeys`).
    public init(config: ConfigReader) throws(UpdraftError) {
        try self.init(reader: ConfigKeys(config))
    }

    /// Reads the application's keys and hands each module's scope to its settings type.
    public init(reader: ConfigKeys) throws(UpdraftError) {
        let d = UpdraftConfiguration()
        dataDirectory = reader.string(forKey: "data_dir", default: d.dataDirectory)
        let levels = Logger.Level.allCases.map(\.rawValue)
        logLevel = Logger.Level(rawValue: reader.string(forKey: "log_level", default: d.logLevel.rawValue, oneOf: levels)) ?? d.logLevel
        let formats = LogFormat.allCases.map(\.rawValue)
        logFormat = LogFormat(rawValue: reader.string(forKey: "log_format", default: d.logFormat.rawValue, oneOf: formats)) ?? d.logFormat
        signingKeyPath = reader.scoped(to: "keys").string(forKey: "signing_key", default: d.signingKeyPath)
        trustedKeysDirectory = reader.scoped(to: "keys").string(forKey: "trusted_dir", default: d.trustedKeysDirectory)
        store = StoreSettings(reader: reader.scoped(to: "store"))
        firmware = FirmwareSettings(reader: reader.scoped(to: "firmware"))
        engine = EngineSettings(reader: reader)
        gateway = GatewaySettings(reader: reader.scoped(to: "gateway"))
        coap = CoAPSettings(reader: reader.scoped(to: "coap"))
        mqtt = MQTTSettings(reader: reader.scoped(to: "mqtt"))
        pki = PKISettings(reader: reader.scoped(to: "pki"))
        http = HTTPSettings(reader: reader.scoped(to: "http"))
        webhooks = WebhookSettings(reader: reader.scoped(to: "webhooks"))
        try reader.check()
    }

    /// Environment (`UPDRAFT_…`) over the YAML file over the defaults (``ConfigSource``).
    /// - Parameter file: a YAML file; nil means Config/updraft.yaml when it exists.
    public static func load(file: String?) async throws -> UpdraftConfiguration {
        let source = try await ConfigSource.load(file: file)
        var loaded = try UpdraftConfiguration(reader: source.keys)
        loaded.warnings = try source.finish()
        try loaded.validate()
        return loaded
    }

    public var resolvedSQLitePath: String { sqlitePath.isEmpty ? path("updraft.sqlite") : sqlitePath }
    public var resolvedSigningKeyPath: String { signingKeyPath.isEmpty ? path("keys/release.key") : signingKeyPath }
    public var resolvedTrustedKeysDirectory: String { trustedKeysDirectory.isEmpty ? path("keys/trusted") : trustedKeysDirectory }

    /// What a key's type and range alone cannot say (`ConfigKeys` checks those while reading).
    public func validate() throws(UpdraftError) {
        guard !dataDirectory.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw UpdraftError("config_invalid", "data_dir is empty. Set it to the folder for the store, keys and images (the default is data).")
        }
        try mqtt.validate()
        try engine.validate()
        try coap.validate()
        try firmware.validate()
        try pki.validate()
        try http.validate()
    }

    /// A path inside the data directory.
    public func path(_ relative: String) -> String {
        URL(fileURLWithPath: dataDirectory).appendingPathComponent(relative).path
    }

    public var imagesDirectory: String { path("firmware") }
    public var resolvedPKIDirectory: String { pki.directory.isEmpty ? path("pki") : pki.directory }
    public var resolvedPSKFile: String { coap.pskFile.isEmpty ? path("coap-psk.txt") : coap.pskFile }
    /// Today's device protocol under the configured topic prefix and control-message limit.
    public var dialect: UpdraftDialectV1 { mqtt.dialect }
}
