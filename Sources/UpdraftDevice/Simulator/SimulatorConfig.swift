import Foundation
import Mosquitto
import UpdraftCore
import UpdraftWire

/// A simulated fleet: `count` devices of one product and version, with a share of them
/// starting offline and shares that meet injected faults. Which devices are picked is
/// deterministic (spread evenly over the ids), so a run can be repeated.
public struct SimulatorConfig: Sendable {
    public var count: Int
    /// Device ids are this prefix plus a zero-padded index: `sim-0000`, `sim-0001`, ...
    public var idPrefix: String = "sim-"
    public var product: ProductID
    public var version: FirmwareVersion
    /// Manifest sequence of `version`, when known (anti-rollback).
    public var installedSequence: Int64?
    /// The release public keys every device trusts.
    public var trustedKeys: TrustedReleaseKeys

    /// What the devices speak: all MQTT, all CoAP, or alternating (even indexes MQTT, odd CoAP).
    public var `protocol`: FleetProtocol = .mqtt

    public var brokerHost: String = "127.0.0.1"
    public var brokerPort: Int = 1883
    /// TLS to the broker (the CA that signs its certificate); nil: plain MQTT.
    public var tls: MosquittoOptions.TLSOptions?
    /// Each device's MQTT password (from `updraft device provision`), by id.
    public var passwords: [DeviceID: String] = [:]
    /// Devices not in `passwords`; `nil` when the broker allows anonymous devices.
    public var password: String?
    /// The topic layout and codec of the MQTT devices; the gateway's must be the same.
    public var dialect: any WireDialect = UpdraftDialectV1()

    /// The gateway's plain `coap://` endpoint; CoAP devices name themselves with `?d=<id>`
    /// (the gateway needs `coap.allow_unauthenticated`).
    public var coapHost: String = "127.0.0.1"
    public var coapPort: Int = 5683
    /// Block2 size CoAP devices ask for: 16, 32, ..., 1024.
    public var blockSize: Int = 1024
    /// CoAP devices: the lifetime they announce (they announce again every half of it);
    /// `nil`: the gateway's default.
    public var coapLifetime: Duration?
    /// CoAP client event loops shared by the CoAP devices; `nil` means `min(2, CoAP devices)`.
    public var coapLoopCount: Int?
    /// Share of CoAP devices that reboot once during their first download (they fetch again).
    public var rebootFraction: Double = 0
    /// How long into the first download those devices reboot.
    public var rebootAfter: Duration = .milliseconds(30)

    /// Share of devices (0...1) that start offline, until ``FleetSimulator/bringOfflineDevicesOnline()``
    /// or `offlineDelay`.
    public var offlineFraction: Double = 0
    /// Offline devices come online by themselves after this long; `nil` waits for the call.
    public var offlineDelay: Duration?
    /// Share of devices whose first download gets one corrupted chunk (verify, then download again).
    public var corruptFraction: Double = 0
    /// Devices download over HTTP by the offer's signed `url` (when it has one).
    public var downloadsOverHTTP = false
    /// Share of devices whose connection drops once during the first download (resume).
    public var disconnectFraction: Double = 0
    /// Where in the download those connections drop.
    public var disconnectAtPercent: Int = 50

    /// Bytes per chunk; `nil` takes the gateway's preferred size.
    public var chunkSize: Int?
    public var windowCount: Int = 16
    public var requestTimeout: Duration = .seconds(2)
    public var rebootDelay: Duration = .milliseconds(500)
    /// Devices send a boot counter in their announcements (see ``DeviceBehavior/announcesBoot``).
    public var announcesBoot: Bool = true
    /// Each device gets `<storageDirectory>/<device id>`; `nil` keeps everything in memory.
    public var storageDirectory: URL?
    /// Keep each device's installed image in memory (tests compare it byte for byte).
    /// Off by default: 1000 devices x the image size adds up.
    public var retainInstalledImages: Bool = false

    /// Event loop threads; `nil` means `min(4, count)`.
    public var loopCount: Int?
    /// Pause between two devices' connects, so a large fleet does not hit the broker at once
    /// (1000 devices at 2 ms: two seconds).
    public var connectStagger: Duration = .milliseconds(2)

    public init(count: Int, product: ProductID, version: FirmwareVersion, trustedKeys: TrustedReleaseKeys) {
        self.count = count
        self.product = product
        self.version = version
        self.trustedKeys = trustedKeys
    }

    /// `true` for about `fraction * count` of the indexes `0..<count`, spread evenly.
    /// `phase` (0..<1) moves the picks within each stretch, so that the faults and the
    /// offline share land on different devices for the usual fractions.
    static func picks(_ index: Int, fraction: Double, phase: Double) -> Bool {
        let f = min(max(fraction, 0), 1)
        return (Double(index + 1) * f + phase).rounded(.down) > (Double(index) * f + phase).rounded(.down)
    }
}

/// The protocol of a simulated fleet.
public enum FleetProtocol: String, Sendable, CaseIterable {
    case mqtt
    case coap
    /// Alternating: even device indexes speak MQTT, odd ones CoAP.
    case mixed

    /// The transport of the device at `index`.
    public func transport(ofDevice index: Int) -> Transport {
        switch self {
        case .mqtt: .mqtt
        case .coap: .coap
        case .mixed: index.isMultiple(of: 2) ? .mqtt : .coap
        }
    }
}

extension SimulatorConfig {
    /// The MQTT devices connect where `broker` says: its host, port and TLS.
    public mutating func useBroker(_ broker: MosquittoOptions) {
        (brokerHost, brokerPort, tls) = (broker.host, broker.port, broker.tls)
    }
}
