import Configuration
import Foundation
import Testing
import UpdraftApp
import UpdraftCoAP
import UpdraftCore
import UpdraftMQTT
import UpdraftSettings
import UpdraftStore
import UpdraftWire

/// Each settings type reads its own keys from the scope it is given (`init(reader:)`),
/// with the bounds of every key; the tunables that were constants are keys like the rest.
@Suite struct SettingsReaderTests {
    /// A reader over variables named like the keys relative to the scope (`CHUNK_MIN` for
    /// `chunk.min`), as `UPDRAFT_*` variables are for the whole configuration.
    static func reader(_ variables: [String: String]) -> ConfigKeys {
        ConfigKeys(ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: variables)))
    }

    @Test func mqttSettingsReadTheirScope() throws {
        let keys = Self.reader([
            "TOPIC_PREFIX": "fleet", "INBOX_CAPACITY": "100", "CHUNK_MAX": "8192", "CHUNK_WINDOWS_PER_DEVICE": "3",
            "CHUNK_DOWNLOAD_ALLOWANCE_IMAGES": "4", "CHUNK_DOWNLOAD_ALLOWANCE_REFILL": "30", "EVENTS_WINDOW": "8",
            "BROKER_PORT": "1884", "BROKER_TLS_ENABLED": "true",
        ])
        let settings = MQTTSettings(reader: keys)
        try keys.check()
        #expect(settings.topicPrefix == "fleet")
        #expect(settings.inboxCapacity == 100)
        #expect(settings.clientOptions.inboxCapacity == 100)
        #expect(settings.chunk.max == 8192)
        #expect(settings.chunk.min == ChunkLimits().min)
        #expect(settings.flow.windowsPerDevice == 3)
        #expect(settings.flow.downloadImagesAtOnce == 4)
        #expect(settings.flow.downloadRefill == .seconds(30))
        #expect(settings.events.window == 8)
        #expect(settings.broker.port == 1884)
        #expect(settings.broker.tls.enabled)
        #expect(settings.clientOptions.tls != nil)
    }

    /// Found by the config fuzz harness: the check looked at Characters, so "+" followed by
    /// a combining mark passed (a wildcard the broker refuses every publish with), and so
    /// did U+0000 (libmosquitto's C strings end there: the gateway subscribed to "up").
    @Test(arguments: ["a+\u{301}", "fleet/#\u{301}", "up\u{0}draft", "+"])
    func aTopicPrefixWithAWildcardOrNULIsRefused(_ prefix: String) throws {
        let settings = MQTTSettings(reader: Self.reader(["TOPIC_PREFIX": prefix]))
        #expect(throws: UpdraftError.self) { try settings.validate() }
        let fine = MQTTSettings(reader: Self.reader(["TOPIC_PREFIX": "fleet/eu-1"]))
        try fine.validate()
    }

    @Test func theGatewayBeatsAreMilliseconds() throws {
        let keys = Self.reader(["FLUSH_INTERVAL_MS": "5", "TAIL_INTERVAL_MS": "250"])
        let settings = GatewaySettings(reader: keys)
        try keys.check()
        #expect(settings.flushInterval == .milliseconds(5))
        #expect(settings.tailInterval == .milliseconds(250))
    }

    @Test func storeFirmwareAndEngineSettingsReadTheirScopes() throws {
        let keys = Self.reader(["SQLITE_PATH": "/tmp/x.sqlite", "CACHE_BYTES": "0", "FLEET_STALL_AFTER": "30"])
        #expect(StoreSettings(reader: keys).sqlitePath == "/tmp/x.sqlite")
        #expect(FirmwareSettings(reader: keys).cacheBytes == 0)
        #expect(EngineSettings(reader: keys).stallAfter == 30)
        #expect(CoAPSettings(reader: keys).port == CoAPSettings().port)
        try keys.check()
    }

    /// `key=value`, set through the key's `UPDRAFT_*` variable.
    static let outOfRange = [
        "gateway.flush_interval_ms=0", "gateway.tail_interval_ms=soon", "mqtt.inbox_capacity=1",
        "mqtt.events.window=70000", "mqtt.chunk.download_allowance_images=0", "mqtt.chunk.download_allowance_refill=-1",
        "firmware.cache_bytes=-5", "fleet.stall_after=0", "coap.max_handshakes=0",
    ]

    @Test(arguments: outOfRange)
    func aBadValueOfANewKeyIsAnErrorNamingIt(_ setting: String) throws {
        let (key, value) = (String(setting.prefix { $0 != "=" }), String(setting.drop { $0 != "=" }.dropFirst()))
        let variables = [ConfigKeys.variable(key): value]
        let provider = EnvironmentVariablesProvider(environmentVariables: variables).prefixKeys(with: "updraft")
        do {
            _ = try UpdraftConfiguration(config: ConfigReader(provider: provider))
            Issue.record("\(variables) was accepted")
        } catch {
            #expect(error.code == "config_invalid")
            #expect(error.message.contains(key) && error.message.contains("'\(value)'"), "\(error.message)")
        }
    }

    @Test func theComposedConfigurationKeepsTheModulePaths() throws {
        let provider = EnvironmentVariablesProvider(environmentVariables: ["UPDRAFT_MQTT_CHUNK_MAX": "1024", "UPDRAFT_COAP_PORT": "0"])
        let configuration = try UpdraftConfiguration(config: ConfigReader(provider: provider.prefixKeys(with: "updraft")))
        #expect(configuration.mqtt.chunk.max == 1024)
        #expect(configuration.coap.port == 0)
        #expect(configuration.dialect.eventsTopic == MQTTSettings().dialect.eventsTopic)
    }
}
