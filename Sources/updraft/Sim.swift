import ArgumentParser
import Foundation
import Logging
import UpdraftApp
import UpdraftCore
import UpdraftDevice

struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run simulated devices against a gateway.",
        discussion: """
            Runs N reference devices in this process (a few MQTT event loops and CoAP client \
            loops, no thread per device), verifying manifests with the release public key \
            (<signing key>.pub). MQTT devices use mqtt.broker.host:port; CoAP devices use \
            coap.host:coap.port over plain CoAP and name themselves with ?d=<id>, which needs \
            coap.allow_unauthenticated on the gateway. --protocol mixed alternates the two. \
            Stop with Ctrl-C.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "Number of devices.") var devices = 10
    @Option(help: "Device id prefix.") var prefix = "sim-"
    @Option(help: "Product the devices are.") var product = "thermo"
    @Option(help: "Version they start on.") var version = "1.0.0"
    @Option(help: "Fraction (0-1) that start offline and connect after --offline-delay seconds.") var offlineFraction = 0.0
    @Option(help: "Seconds before the offline devices connect.") var offlineDelay = 30
    @Option(help: "Fraction whose first download gets a corrupted chunk (they re-download).") var corruptFraction = 0.0
    @Option(help: "Fraction that drop their connection mid-download (they resume).") var disconnectFraction = 0.0
    @Option(help: "What the devices speak: mqtt, coap or mixed (alternating).") var `protocol`: FleetProtocol = .mqtt
    @Option(help: "Chunk size MQTT devices ask for (default: the gateway's preferred).") var chunkSize: Int?
    @Option(help: "Block2 size CoAP devices ask for (16, 32, ..., 1024).") var blockSize = 1024
    @Option(help: "Chunks per request.") var window = 16
    @Option(help: "How devices fetch images: native (MQTT chunks, CoAP blocks) or http (the offer's signed url, Range resume).")
    var download: DownloadMethod = .native

    enum DownloadMethod: String, ExpressibleByArgument, CaseIterable {
        case native, http
    }

    func validate() throws {
        guard devices > 0 else { throw ValidationError("--devices must be positive.") }
        for f in [offlineFraction, corruptFraction, disconnectFraction] where !(0...1).contains(f) {
            throw ValidationError("Fractions are between 0 and 1.")
        }
        guard (16...1024).contains(blockSize), blockSize & (blockSize - 1) == 0 else {
            throw ValidationError("--block-size must be one of 16, 32, 64, 128, 256, 512, 1024.")
        }
    }

    func run() async throws {
        try await userFacing {
            try OpenFileLimit.reserve(OpenFileLimit.forDevices(devices))
            let configuration = try await global.load()
            var sim = SimulatorConfig(
                count: devices, product: try ProductID(validating: product), version: try FirmwareVersion(validating: version),
                trustedKeys: try ReleaseKeyFiles(configuration).trustedKeys())
            sim.idPrefix = prefix
            sim.useBroker(configuration.brokerOptions(clientID: "-"))
            sim.dialect = configuration.dialect
            sim.protocol = `protocol`
            if `protocol` != .mqtt {
                guard configuration.coap.enabled, configuration.coap.port != 0 else {
                    throw UpdraftError(
                        "coap_disabled", "CoAP devices need the gateway's plain CoAP endpoint: set coap.enabled: true and a coap.port.")
                }
                // A wildcard listen address is reached on loopback.
                let host = configuration.coap.host
                sim.coapHost = ["0.0.0.0", "::", ""].contains(host) ? "127.0.0.1" : host
                sim.coapPort = configuration.coap.port
                sim.blockSize = blockSize
            }
            sim.offlineFraction = offlineFraction
            sim.offlineDelay = .seconds(offlineDelay)
            sim.corruptFraction = corruptFraction
            sim.disconnectFraction = disconnectFraction
            sim.chunkSize = chunkSize
            sim.windowCount = window
            sim.downloadsOverHTTP = download == .http
            if configuration.managedBrokerAuthenticates && `protocol` != .coap {
                // New passwords for the simulated devices, as `updraft device provision` gives.
                let ops = try Operations(configuration: configuration, access: .existing, logger: Logger(label: "updraft.sim"))
                let accounts = try ops.provisionDevices(try sim.deviceIDs())
                sim.passwords = Dictionary(uniqueKeysWithValues: accounts.map { (DeviceID(unchecked: $0.username), $0.password) })
                if let probe = accounts.last { try await ops.waitUntilBrokerAccepts(probe) }
            }
            let fleet = try FleetSimulator(config: sim, logger: Logger(label: "updraft.sim"))
            let line = ProgressLine()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await fleet.run() }
                group.addTask {
                    while !Task.isCancelled {
                        let s = fleet.snapshot()
                        let updated = s.versions.filter { $0.key.rawValue != version }.values.reduce(0, +)
                        line.update(Double(updated) / Double(max(s.devices, 1)), s.description)
                        try await Task.sleep(for: .milliseconds(500))
                    }
                }
                try await group.next()
                group.cancelAll()
            }
            line.finish()
        }
    }
}
