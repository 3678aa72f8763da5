import ArgumentParser
import Foundation
import Logging
import UpdraftApp

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput against a reference taken in the same run.",
        subcommands: [MQTT.self])

    struct MQTT: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mqtt",
            abstract: "Raw broker stream vs Updraft firmware delivery to N devices.",
            discussion: """
                Starts a managed mosquitto on a free loopback port. First streams devices × image-bytes \
                of chunk-size messages from one publisher to one subscriber (the reference), then has \
                the gateway deliver an image of image-bytes to each of N simulated devices asking for \
                windows of chunk-size chunks. Prints both figures and their ratio.
                """)

        @Option(help: "Simulated devices.") var devices = 100
        @Option(help: "Image size in bytes.") var imageBytes = 1 << 20
        @Option(help: "Chunk size in bytes.") var chunkSize = 4096
        @Option(help: "Chunks per device request.") var window = 16
        @Option(help: "Log level.") var logLevel: Logger.Level = .warning

        func validate() throws {
            guard devices > 0, imageBytes >= chunkSize, (256...65536).contains(chunkSize), window >= 1 else {
                throw ValidationError("Need devices > 0, 256 <= chunk-size <= 65536, image-bytes >= chunk-size, window >= 1.")
            }
        }

        func run() async throws {
            Logging.bootstrapOnce(level: logLevel)
            if let warning = OpenFileLimit.raise(toFit: OpenFileLimit.forDevices(devices)) { FileHandle.standardError.write(Data((warning + "\n").utf8)) }
            var options = MQTTBench.Options()
            options.devices = devices
            options.imageBytes = imageBytes
            options.chunkSize = chunkSize
            options.window = window
            let line = ProgressLine()
            let result = try await userFacing {
                try await MQTTBench(options: options, logger: Logger(label: "updraft.bench")).run { phase, fraction in
                    line.update(fraction, phase)
                }
            }
            line.finish()
            let r = result.raw
            print("updraft bench mqtt: \(devices) devices × \(imageBytes) B, \(chunkSize) B chunks, window \(window)")
            print("| measure | bytes | seconds | MiB/s |")
            print("|---|---:|---:|---:|")
            print(String(format: "| raw mosquitto 1 pub → 1 sub | %d | %.3f | %.1f |", r.bytes, r.seconds, r.megabytesPerSecond))
            print(String(format: "| Updraft delivery to %d devices | %d | %.3f | %.1f |", devices, result.deliveryBytes, result.deliverySeconds, result.deliveryMegabytesPerSecond))
            print(String(format: "ratio Updraft / raw: %.2f", result.ratio))
        }
    }
}
