import ArgumentParser
import Foundation
import Logging
import UpdraftApp
import UpdraftTools
import UpdraftCore
import UpdraftDevice

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a whole update end to end on this machine.",
        discussion: """
            Starts a mosquitto broker, the gateway (MQTT and CoAP) and a SQLite store in a temporary \
            folder, adds and signs a demo firmware, starts simulated devices (by default a mixed \
            fleet: every other device speaks CoAP; some offline at release time, connecting later), \
            releases the firmware to all of them, shows progress and prints a summary per protocol. \
            Exits 0 only when every device confirmed the new version.
            """)

    @Option(help: "Simulated devices.") var devices = 50
    @Option(help: "How many of them are offline at release time.") var offline = 10
    @Option(help: "Size of the demo image in bytes.") var imageBytes = 256 * 1024
    @Option(help: "What the devices speak: mqtt, coap or mixed (alternating).") var `protocol`: FleetProtocol = .mixed
    @Option(help: "Chunk size the MQTT devices ask for (256-65536).") var chunkSize = 4096
    @Option(help: "Block2 size the CoAP devices ask for (16, 32, ..., 1024).") var blockSize = 1024
    @Option(help: "Give up after this many seconds.") var timeout = 180
    @Option(help: "Keep the data here instead of a temporary folder.") var keep: String?
    @Option(help: "Log level.") var logLevel: Logger.Level = .warning

    func validate() throws {
        guard devices > 0, (0...devices).contains(offline) else { throw ValidationError("--offline must be between 0 and --devices.") }
        guard (256...65536).contains(chunkSize) else { throw ValidationError("--chunk-size must be 256...65536.") }
        guard (16...1024).contains(blockSize), blockSize & (blockSize - 1) == 0 else {
            throw ValidationError("--block-size must be one of 16, 32, 64, 128, 256, 512, 1024.")
        }
        guard imageBytes > 0 else { throw ValidationError("--image-bytes must be positive.") }
    }

    func run() async throws {
        LogSetup.bootstrapOnce(level: logLevel)
        // Refused with the numbers before anything starts: nothing to clean up.
        try await userFacing { try OpenFileLimit.reserve(OpenFileLimit.forDevices(devices)) }
        var options = DemoRunner.Options()
        options.devices = devices
        options.offline = offline
        options.imageBytes = imageBytes
        options.chunkSize = chunkSize
        options.protocol = `protocol`
        options.blockSize = blockSize
        options.timeout = .seconds(timeout)
        options.keepDirectory = keep
        let line = ProgressLine()
        let summary = try await userFacing {
            try await DemoRunner(options: options, logger: Logger(label: "updraft.demo")).run { progress in
                line.update(progress.percent / 100, "\(progress.phase): \(describe(progress.jobs))")
            }
        }
        line.finish()
        print("Updraft demo: \(summary.devices) devices, \(imageBytes) byte image")
        for state in JobState.allCases { if let n = summary.jobs[state] { print("  \(state.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \(n)") } }
        for transport in Transport.allCases {
            guard let devices = summary.devicesByTransport[transport] else { continue }
            let jobs = summary.jobsByTransport[transport] ?? [:]
            print("  \(transport.rawValue.uppercased()) devices \(devices): \(describe(jobs))")
        }
        for failure in summary.failures { print("  failed: \(failure)") }
        print(String(format: "  MQTT bytes sent %d (%.1f MiB), CoAP image downloads %d, time %.1f s", summary.bytesSent, Double(summary.bytesSent) / 1_048_576, summary.coapDownloads, summary.seconds))
        if !summary.allSucceeded {
            print("Not every device updated. Rerun with --log-level info to see why.")
            throw ExitCode(1)
        }
        print("Every device runs 1.1.0.")
    }
}

extension FleetProtocol: ExpressibleByArgument {}
