import Foundation
import LoopbackPorts
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport
import UpdraftTools

/// A data folder for `updraft serve` processes a test starts itself: a configuration with
/// a free broker port, a release key and one firmware image (`thermo@2.0`).
struct ServeFolder {
    let path: String
    let configuration: UpdraftConfiguration
    let ops: Operations
    let firmware: Firmware

    init(_ prefix: String, imageBytes: Int, seed: UInt64) async throws {
        path = try makeTemporaryDirectory(prefix: prefix).path
        var configuration = UpdraftConfiguration()
        configuration.dataDirectory = path
        // As servedBroker(port:) starts it: TLS on a free port, no mutual-TLS listener.
        configuration.mqtt.broker.tlsPort = PortProbe.freePort()
        configuration.mqtt.broker.mtlsPort = 0
        self.configuration = configuration
        ops = try Operations(configuration: configuration, logger: Harness.logger)
        _ = try ops.generateKeys(force: false)
        try DeterministicImage.write(imageBytes, seed: seed, to: path + "/fw.bin", what: "test")
        firmware = try await ops.addFirmware(file: path + "/fw.bin", product: "thermo", version: "2.0").firmware
    }

    var brokerPort: Int { configuration.mqtt.broker.tlsPort }

    /// `count` provisioned thermo@1.0 devices on this folder's broker, started, once the
    /// gateway process has registered them all.
    func startedFleet(
        _ count: Int, registered timeout: Duration = .seconds(60), tune: (inout SimulatorConfig) -> Void = { _ in }
    ) async throws -> FleetSimulator {
        var sim = SimulatorConfig(count: count, product: "thermo", version: "1.0", trustedKeys: try ops.trustedKeys())
        sim.useBroker(configuration.brokerOptions(clientID: "-"))
        sim.requestTimeout = .milliseconds(800)
        tune(&sim)
        try await ops.provision(&sim)
        let fleet = try FleetSimulator(config: sim, logger: Harness.logger)
        fleet.start()
        try await eventually(timeout: timeout, "the gateway process to register the fleet") {
            try await ops.store.devices().filter { $0.online && $0.product != nil }.count == count
        }
        return fleet
    }

    /// Kills `processes` still running and a mosquitto orphaned by SIGKILL (through its
    /// pid file), then deletes the folder.
    func remove(after processes: [ChildProcess]) {
        killAll(processes, brokerOf: path)
        try? FileManager.default.removeItem(atPath: path)
    }
}
