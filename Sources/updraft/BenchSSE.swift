import ArgumentParser
import Foundation
import Logging
import UpdraftTools

extension Bench {
    struct SSE: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sse",
            abstract: "Event lag to N SSE subscribers during a release to M devices, against the MQTT events topic.",
            discussion: """
                Starts a managed mosquitto, a gateway with its HTTP API on a free 127.0.0.1 port and M \
                simulated devices in this process; opens N subscribers on /v1/events/stream (a read \
                token, AsyncHTTPClient) and, as the reference, one subscriber on the MQTT events topic \
                (the events account, QoS 1, through the same broker); then releases an image to the M \
                devices and waits until all run it. For every event of the run and every subscriber, \
                the lag from the event's recorded time (stamped by the engine at the transition; the \
                store commits in batches every gateway.flush_interval_ms, so the lag includes that wait) \
                to its arrival. Prints deliveries, p50, p99 and max per side, and the deliveries lost \
                or duplicated (0 expected: every subscriber gets every seq once).
                """)

        @Option(help: "SSE subscribers.") var subscribers = 100
        @Option(help: "Simulated devices in the release.") var devices = 100
        @Option(help: "Image size in bytes.") var imageBytes = 64 << 10
        @Option(help: "Log level.") var logLevel: Logger.Level = .warning

        func validate() throws {
            guard (1...1000).contains(subscribers), (1...10_000).contains(devices), (1...(64 << 20)).contains(imageBytes) else {
                throw ValidationError("Need 1 <= subscribers <= 1000, 1 <= devices <= 10000 and 1 <= image-bytes <= 64 MiB.")
            }
        }

        func run() async throws {
            let options = SSEBench.Options(subscribers: subscribers, devices: devices, imageBytes: imageBytes)
            let result = try await Bench.measure(logLevel: logLevel, connections: devices + subscribers) {
                try await SSEBench(options: options, logger: Bench.logger).run(report: $0)
            }
            print("updraft bench sse: \(subscribers) SSE subscribers, \(devices) devices, \(imageBytes) B image")
            result.report().forEach { print($0) }
            if result.sse.lost + result.mqtt.lost > 0 { throw ExitCode.failure }
        }
    }
}
