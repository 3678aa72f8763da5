import Foundation
import LoopbackPorts
import UpdraftApp
import UpdraftCore
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

    /// Kills `processes` still running and a mosquitto orphaned by SIGKILL (through its
    /// pid file), then deletes the folder.
    func remove(after processes: [ChildProcess]) {
        killAll(processes, brokerOf: path)
        try? FileManager.default.removeItem(atPath: path)
    }
}
