import Foundation
import Logging
import UpdraftCore
import UpdraftDevice

/// `updraft bench mqtt`: in one run on one broker, the raw publisher→subscriber stream
/// and Updraft's firmware delivery to N simulated devices, with the ratio of the two.
public struct MQTTBench: Sendable {
    public struct Options: Sendable {
        public var devices = 100
        public var imageBytes = 1 << 20
        public var chunkSize = 4096
        public var window = 16
        public init() {}
    }

    public struct Result: Sendable {
        public var raw: RawThroughput.Result
        public var deliveryBytes: Int
        public var deliverySeconds: Double
        public var resumes: Int
        public var deliveryMegabytesPerSecond: Double { Double(deliveryBytes) / 1_048_576 / deliverySeconds }
        public var ratio: Double { deliveryMegabytesPerSecond / raw.megabytesPerSecond }
    }

    public let options: Options
    public let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func run(report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        let stack = try await LocalStack(logger: logger) { c in
            c.mqtt.chunk.maxCount = max(c.mqtt.chunk.maxCount, options.window)
        }
        do {
            let result = try await run(on: stack, report: report)
            await stack.stop()
            return result
        } catch {
            await stack.stop()
            throw error
        }
    }

    private func run(on stack: LocalStack, report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        let total = options.devices * options.imageBytes
        report("raw broker stream", 0)
        let raw = try await RawThroughput.measure(
            port: stack.brokerPort, username: stack.configuration.mqtt.username,
            topic: stack.configuration.topics.prefix + "/bench/raw", size: options.chunkSize, count: total / options.chunkSize,
            window: options.window * 4, logger: logger)

        _ = try await stack.startGateway()
        let file = stack.directory + "/bench.bin"
        var generator = SplitMix64(seed: 7)
        FileManager.default.createFile(atPath: file, contents: Data((0..<options.imageBytes).map { _ in UInt8(truncatingIfNeeded: generator.next()) }))
        let firmware = try await stack.operations.addFirmware(file: file, product: "bench", version: "2.0").firmware
        var sim = SimulatorConfig(count: options.devices, product: "bench", version: "1.0", releaseKey: try stack.operations.publicKey())
        sim.brokerPort = stack.brokerPort
        sim.chunkSize = options.chunkSize
        sim.windowCount = options.window
        sim.requestTimeout = .seconds(5)
        sim.idPrefix = "bench-"
        let fleet = try FleetSimulator(config: sim, logger: logger)
        fleet.start()
        try await fleet.waitUntil(timeout: .seconds(60)) { $0.online == options.devices }
        // The release by product only finds devices the registry has: wait for all of them.
        let deadline = ContinuousClock.now + .seconds(60)
        while try await stack.operations.store.devices().filter({ $0.online && $0.product != nil }).count < options.devices {
            guard ContinuousClock.now < deadline else {
                throw UpdraftError("bench_setup", "The gateway did not register all \(options.devices) devices within 60 s.")
            }
            try await Task.sleep(for: .milliseconds(20))
        }

        report("Updraft delivery", 0)
        let start = ContinuousClock.now
        _ = try await stack.operations.createRelease(firmwareID: firmware.id, target: .product("bench"), allowDowngrade: false)
        let done = try await fleet.waitUntil(timeout: .seconds(600), pollInterval: .milliseconds(5)) { snapshot in
            report("Updraft delivery", Double(snapshot.bytesReceived) / Double(total))
            return snapshot.bytesReceived >= total
        }
        let seconds = (ContinuousClock.now - start).seconds
        await fleet.stop()
        return Result(raw: raw, deliveryBytes: done.bytesReceived, deliverySeconds: seconds, resumes: done.resumes)
    }
}
