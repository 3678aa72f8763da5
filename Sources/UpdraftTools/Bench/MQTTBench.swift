import Foundation
import Logging
import LoopbackPorts
import UpdraftApp
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
        /// Raw stream and delivery alternate this many times; the figures are the medians.
        public var rounds = 5
        /// true: the broker lets anyone in (`authentication: none`), to measure what passwords cost.
        public var anonymous = false

        public init(
            devices: Int = 100, imageBytes: Int = 1 << 20, chunkSize: Int = 4096, window: Int = 16, rounds: Int = 5, anonymous: Bool = false
        ) {
            (self.devices, self.imageBytes, self.chunkSize, self.window, self.rounds) = (devices, imageBytes, chunkSize, window, rounds)
            self.anonymous = anonymous
        }
    }

    /// One raw stream followed by one release delivered to every device.
    public struct Round: Sendable {
        public var raw: RawThroughput.Result
        public var deliveryBytes: Int
        public var deliverySeconds: Double
        /// CPU seconds of the broker and of this process (gateway and devices, or the raw
        /// publisher and subscriber) during each measure.
        public var rawCPU: (broker: Double?, process: Double?)
        public var deliveryCPU: (broker: Double?, process: Double?)
        public var deliveryMegabytesPerSecond: Double { Double(deliveryBytes) / 1_048_576 / deliverySeconds }
        public var ratio: Double { deliveryMegabytesPerSecond / raw.megabytesPerSecond }
    }

    public struct Result: Sendable {
        public var rounds: [Round]
        public var resumes: Int
        public var stalls: Int
        public var rawMegabytesPerSecond: Double { median(rounds.map(\.raw.megabytesPerSecond)) }
        public var deliveryMegabytesPerSecond: Double { median(rounds.map(\.deliveryMegabytesPerSecond)) }
        /// The median of the rounds' own ratios: each round's raw stream and delivery run
        /// back to back under the same conditions of the machine, so their ratio is the
        /// paired figure, and one odd round does not decide it.
        public var ratio: Double { median(rounds.map(\.ratio)) }
    }

    public let options: Options
    public let logger: Logger

    public init(options: Options, logger: Logger) { (self.options, self.logger) = (options, logger) }

    public func run(report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        // Password authentication and the ACL on, as in production, for the fleet and for
        // the raw stream alike: mosquitto checks the ACL at every publish and delivery.
        try await LocalStack.with(logger: logger, tune: { c in
            // Throughput over plain MQTT on loopback, as the bench has always measured it
            // (the broker's TLS costs CPU per message; devices on a network use TLS).
            c.mqtt.broker.plainPort = PortProbe.freePort()
            c.mqtt.chunk.maxCount = max(c.mqtt.chunk.maxCount, options.window)
            if options.anonymous { c.mqtt.broker.authentication = .none }
        }) { stack in try await run(on: stack, report: report) }
    }

    static let rawPublisher: DeviceID = "bench-raw-pub"
    static let rawSubscriber: DeviceID = "bench-raw-sub"

    /// The raw stream's two accounts (client id = username: two of them), with an ACL
    /// block each, added to the generated ACL before the reload that provisioning sends.
    private func prepareRawStream(_ stack: LocalStack) async throws {
        let topic = rawTopic(stack)
        let acl = stack.directory + "/broker/mosquitto.acl"
        let rules = "\nuser \(Self.rawPublisher)\ntopic write \(topic)\nuser \(Self.rawSubscriber)\ntopic read \(topic)\n"
        try (try String(contentsOfFile: acl, encoding: .utf8) + rules).write(toFile: acl, atomically: true, encoding: .utf8)
        // Provisioning reloads the broker and waits until it accepts them; anonymous, the reload is ours.
        stack.broker.reload()
        _ = try await stack.devicePasswords([Self.rawPublisher, Self.rawSubscriber])
    }

    private func rawTopic(_ stack: LocalStack) -> String { stack.configuration.mqtt.topicPrefix + "/bench/raw" }

    private func run(on stack: LocalStack, report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        let total = options.devices * options.imageBytes
        _ = try await stack.startGateway()
        try await prepareRawStream(stack)
        // Every round releases a newer version; all are signed before anything is timed.
        var firmware: [Firmware] = []
        for round in 1...options.rounds {
            let file = stack.directory + "/bench-\(round).bin"
            try DeterministicImage.write(options.imageBytes, seed: UInt64(round), to: file, what: "bench")
            firmware.append(try await stack.operations.addFirmware(file: file, product: "bench", version: "\(round + 1).0").firmware)
        }
        var sim = SimulatorConfig(count: options.devices, product: "bench", version: "1.0", trustedKeys: try stack.operations.trustedKeys())
        sim.useBroker(stack.brokerOptions(clientID: "-"))
        sim.chunkSize = options.chunkSize
        sim.windowCount = options.window
        sim.requestTimeout = .seconds(5)
        sim.rebootDelay = .milliseconds(10)
        sim.idPrefix = "bench-"
        try await stack.provision(&sim)
        let fleet = try FleetSimulator(config: sim, logger: logger)
        fleet.start()
        do {
            let result = try await measure(stack, fleet, firmware, total: total, report: report)
            await fleet.stop()
            return result
        } catch {
            await fleet.stop()
            throw error
        }
    }

    private func measure(
        _ stack: LocalStack, _ fleet: FleetSimulator, _ firmware: [Firmware], total: Int,
        report: @escaping @Sendable (String, Double) -> Void
    ) async throws -> Result {
        try await fleet.waitUntil(timeout: .seconds(60)) { $0.online == options.devices }
        // Provisioned by prepareRawStream: the passwords LocalStack keeps.
        let passwords = try await stack.devicePasswords([Self.rawPublisher, Self.rawSubscriber])
        let (publisher, subscriber) = (Self.rawPublisher.rawValue, Self.rawSubscriber.rawValue)
        var rounds: [Round] = []
        for (index, image) in firmware.enumerated() {
            let label = "round \(index + 1)/\(firmware.count)"
            report("\(label): raw broker stream", 0)
            let brokerPID = stack.broker.pid
            let (raw, rawBrokerCPU, rawProcessCPU) = try await CPUTime.measure(broker: brokerPID) {
                try await RawThroughput.measure(
                    port: stack.brokerPort, publisher: (publisher, passwords[Self.rawPublisher]),
                    subscriber: (subscriber, passwords[Self.rawSubscriber]),
                    topic: rawTopic(stack), size: options.chunkSize, count: total / options.chunkSize,
                    window: options.window * 4, logger: logger)
            }
            // The release by product only finds devices the registry has on the previous version.
            let previous: FirmwareVersion = index == 0 ? "1.0" : firmware[index - 1].version
            try await stack.waitForRegistry(options.devices, "devices on \(previous)") { $0.version == previous }

            report("\(label): Updraft delivery", 0)
            let before = fleet.bytesReceived
            let start = ContinuousClock.now
            let (delivered, brokerCPU, processCPU) = try await CPUTime.measure(broker: brokerPID) {
                _ = try await stack.operations.createRelease(firmwareID: image.id, target: .product("bench"), allowDowngrade: false)
                // Polls the byte counters only: a full snapshot every 5 ms would cost the devices' time.
                let deadline = ContinuousClock.now + .seconds(600)
                while true {
                    let bytes = fleet.bytesReceived - before
                    report("\(label): Updraft delivery", Double(bytes) / Double(total))
                    if bytes >= total { return bytes }
                    guard ContinuousClock.now < deadline else {
                        throw UpdraftError("bench_stalled", "Delivery stalled at \(bytes) of \(total) bytes: \(fleet.snapshot())")
                    }
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
            let seconds = (ContinuousClock.now - start).seconds
            rounds.append(
                Round(
                    raw: raw, deliveryBytes: delivered, deliverySeconds: seconds,
                    rawCPU: (rawBrokerCPU, rawProcessCPU), deliveryCPU: (brokerCPU, processCPU)))
            // Not timed: every device verifies, installs, reboots and runs the new version.
            report("\(label): devices installing", 1)
            let settled = try await fleet.waitUntil(timeout: .seconds(120)) {
                $0.count(running: image.version) == options.devices && $0.online == options.devices
            }
            guard settled.failures.isEmpty else {
                throw UpdraftError("bench_failed", "Devices failed the update in \(label): \(settled)")
            }
        }
        let last = fleet.snapshot()
        return Result(rounds: rounds, resumes: last.resumes, stalls: last.stalls)
    }
}

/// The middle value (the mean of the two middle ones for an even count).
func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
