import Foundation
import Mosquitto
import UpdraftCore
import UpdraftWire

/// Everything one MQTT device needs: who it is, what it runs, where the broker is and how
/// it downloads; what every reference device shares (release key, retries, storage, ...)
/// is in ``behavior`` and reads as if it were here. Defaults suit a broker on localhost.
public struct DeviceConfig: ReferenceDeviceConfig {
    /// Also the MQTT client id and username.
    public var id: DeviceID
    public var product: ProductID
    /// The version running at start, unless the storage directory records a later install.
    public var version: FirmwareVersion
    /// Manifest sequence of `version`, when known; anti-rollback compares offers against it.
    public var installedSequence: Int64?
    public var password: String?

    public var brokerHost: String = "127.0.0.1"
    public var brokerPort: Int = 1883
    public var tls: MosquittoOptions.TLSOptions?
    /// The topic layout and codec; the gateway's must be the same.
    public var dialect: any WireDialect = UpdraftDialectV1()
    /// Reconnect backoff after a lost connection.
    public var reconnect = ReconnectPolicy(initialDelay: .milliseconds(200), maxDelay: .seconds(5))
    public var behavior: DeviceBehavior

    /// Bytes per chunk; `nil` takes the gateway's preferred size. Clamped to the offer's limits.
    public var chunkSize: Int?
    /// Chunks asked for in one download request; capped by the offer's `max_count`.
    public var windowCount: Int = 16
    /// A window with no new chunk for this long is asked again from its first missing chunk.
    public var requestTimeout: Duration = .seconds(2)

    // Fault injection, for the simulator and tests.

    /// Drop the connection (no DISCONNECT, so the will fires) once when the first download
    /// passes this percent, to exercise resume.
    public var dropConnectionAtPercent: Int?

    public init(
        id: DeviceID, product: ProductID, version: FirmwareVersion, trustedKeys: TrustedReleaseKeys,
        brokerHost: String = "127.0.0.1", brokerPort: Int = 1883
    ) {
        self.id = id
        self.product = product
        self.version = version
        self.behavior = DeviceBehavior(trustedKeys: trustedKeys)
        self.brokerHost = brokerHost
        self.brokerPort = brokerPort
    }

    /// Connects where `broker` says: its host, port and TLS (a client certificate in
    /// `broker.tls` makes this a certificate device for the mutual-TLS port).
    public mutating func useBroker(_ broker: MosquittoOptions) {
        (brokerHost, brokerPort, tls) = (broker.host, broker.port, broker.tls)
    }
}
