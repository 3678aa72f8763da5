import AsyncHTTPClient
import Foundation
import Logging
import LoopbackPorts
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftWire

/// `updraft bench sse`: in one run, N subscribers on `GET /v1/events/stream` while M
/// simulated devices take a release, and, as the reference, the gateway's MQTT events
/// topic read through the same broker by the events account. For every event and every
/// subscriber: the lag from the event's recorded time to its arrival.
///
/// The origin is the `time` the engine stamps on the event when the transition happens
/// (kept to the microsecond in the store), not the commit: the store writes the engine's
/// changes in batches every `gateway.flush_interval_ms` (20 ms), so each lag includes the
/// wait for the next flush and the commit itself, and over-states commit → delivery by
/// that much. Both sides start from the same stamp, so they compare as they are.
public struct SSEBench: Sendable {
    public struct Options: Sendable {
        public var subscribers = 100
        public var devices = 100
        public var imageBytes = 64 << 10

        public init(subscribers: Int = 100, devices: Int = 100, imageBytes: Int = 64 << 10) {
            (self.subscribers, self.devices, self.imageBytes) = (subscribers, devices, imageBytes)
        }
    }

    /// Lags of one side over every (subscriber, event) delivery, and what did not arrive.
    public struct Delivery: Sendable {
        public var subscribers: Int
        /// Deliveries timed: events × subscribers, less the lost ones.
        public var count: Int
        public var p50: Double
        public var p99: Double
        public var max: Double
        /// (subscriber, event) pairs never delivered.
        public var lost: Int
        /// Deliveries of a seq the subscriber had already received.
        public var duplicates: Int
    }

    public struct Result: Sendable {
        /// Events committed from the release to the last device back on the new version.
        public var events: Int
        public var sse: Delivery
        public var mqtt: Delivery
        public var flushInterval: Duration

        public func report() -> [String] {
            func ms(_ seconds: Double) -> String { String(format: "%.1f", seconds * 1000) }
            var lines = [
                "| delivery | subscribers | deliveries | p50 ms | p99 ms | max ms | lost | duplicates |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for (name, side) in [("SSE /v1/events/stream", sse), ("MQTT events topic (reference)", mqtt)] {
                lines.append(
                    "| \(name) | \(side.subscribers) | \(side.count) | \(ms(side.p50)) | \(ms(side.p99)) | \(ms(side.max)) | \(side.lost) | \(side.duplicates) |")
            }
            lines.append("events: \(events); lag from the event's recorded time (includes the store's batching, flush every \(flushInterval))")
            lines.append("lost: \(sse.lost + mqtt.lost)")
            return lines
        }
    }

    public let options: Options
    public let logger: Logger

    public init(options: Options, logger: Logger) { (self.options, self.logger) = (options, logger) }

    public func run(report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        let port = PortProbe.freePort()
        return try await LocalStack.with(logger: logger, tune: { $0.http.port = port }) { stack in
            _ = try await stack.startGateway()
            let fleet = try await startFleet(stack, report: report)
            do {
                let result = try await measure(stack, fleet, httpPort: port, report: report)
                await fleet.stop()
                return result
            } catch {
                await fleet.stop()
                throw error
            }
        }
    }

    /// The devices on version 1.0, online and registered.
    private func startFleet(_ stack: LocalStack, report: @escaping @Sendable (String, Double) -> Void) async throws -> FleetSimulator {
        report("\(options.devices) devices", 0)
        var sim = SimulatorConfig(count: options.devices, product: "bench", version: "1.0", trustedKeys: try stack.operations.trustedKeys())
        sim.useBroker(stack.brokerOptions(clientID: "-"))
        sim.idPrefix = "bench-"
        sim.rebootDelay = .milliseconds(10)
        try await stack.provision(&sim)
        let fleet = try FleetSimulator(config: sim, logger: logger)
        fleet.start()
        do {
            try await fleet.waitUntil(timeout: .seconds(60)) { $0.online == options.devices }
            try await stack.waitForRegistry(options.devices, "devices on 1.0") { $0.version == "1.0" }
        } catch {
            await fleet.stop()
            throw error
        }
        return fleet
    }

    private func measure(
        _ stack: LocalStack, _ fleet: FleetSimulator, httpPort: Int, report: @escaping @Sendable (String, Double) -> Void
    ) async throws -> Result {
        let file = stack.directory + "/sse-bench.bin"
        try DeterministicImage.write(options.imageBytes, seed: 7, to: file, what: "bench")
        let firmware = try await stack.operations.addFirmware(file: file, product: "bench", version: "2.0").firmware
        let token = try await stack.operations.createToken(name: "bench-sse", scope: "read").secret.value
        let start = try await stack.operations.store.lastEventSequence()

        report("\(options.subscribers) SSE subscribers and the MQTT events topic", 0)
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = options.subscribers + 1
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        var events = stack.brokerOptions(clientID: "-")
        let account = try stack.operations.serviceAccounts().events
        (events.clientID, events.username, events.password) = (account.username, account.username, account.password)
        let mqtt = MQTTEventsSubscriber(options: events, logger: logger)
        var subscribers: [SSESubscriber] = []
        do {
            try await mqtt.start(topic: stack.dialect.eventsTopic)
            for _ in 0..<options.subscribers {
                subscribers.append(try await SSESubscriber.open(client, port: httpPort, token: token, after: start))
            }
            let last = try await release(firmware, stack, fleet, report: report)
            try await waitForDelivery(through: last, subscribers.map(\.log) + [mqtt.log], report: report)
            let result = try await evaluate(stack, after: start, through: last, sse: subscribers.map(\.log), mqtt: mqtt.log)
            await close(subscribers, mqtt, client)
            return result
        } catch {
            await close(subscribers, mqtt, client)
            throw error
        }
    }

    private func close(_ subscribers: [SSESubscriber], _ mqtt: MQTTEventsSubscriber, _ client: HTTPClient) async {
        for subscriber in subscribers { await subscriber.close() }
        await mqtt.stop()
        try? await client.shutdown()
    }

    /// Releases `firmware` to every device, waits until all run it; the last seq of the run.
    private func release(
        _ firmware: Firmware, _ stack: LocalStack, _ fleet: FleetSimulator, report: @escaping @Sendable (String, Double) -> Void
    ) async throws -> Int64 {
        report("release to \(options.devices) devices", 0)
        _ = try await stack.operations.createRelease(firmwareID: firmware.id, target: .product("bench"), allowDowngrade: false)
        let settled = try await fleet.waitUntil(timeout: .seconds(300)) {
            $0.count(running: firmware.version) == options.devices && $0.online == options.devices
        }
        guard settled.failures.isEmpty else { throw UpdraftError("bench_failed", "Devices failed the update: \(settled)") }
        // The last transitions (succeeded) are written by the next flushes.
        try await Task.sleep(for: .milliseconds(500))
        return try await stack.operations.store.lastEventSequence()
    }

    /// Until every subscriber has seen `last` (or 30 s without progress: the lost are counted).
    private func waitForDelivery(through last: Int64, _ logs: [ArrivalLog], report: @escaping @Sendable (String, Double) -> Void) async throws {
        var behind = logs.filter { $0.highest < last }.count
        var lastProgress = ContinuousClock.now
        while behind > 0, ContinuousClock.now - lastProgress < .seconds(30) {
            report("delivery of seq \(last)", Double(logs.count - behind) / Double(logs.count))
            try await Task.sleep(for: .milliseconds(50))
            let now = logs.filter { $0.highest < last }.count
            if now < behind { (behind, lastProgress) = (now, .now) }
        }
    }

    private func evaluate(_ stack: LocalStack, after start: Int64, through last: Int64, sse: [ArrivalLog], mqtt: ArrivalLog) async throws -> Result {
        var times: [Int64: Date] = [:]
        var cursor = start
        while cursor < last {
            let page = try await stack.operations.store.events(after: cursor, limit: 1000)
            guard let end = page.last?.sequence else { break }
            for event in page where event.sequence <= last { times[event.sequence] = event.time }
            cursor = end
        }
        return Result(
            events: times.count, sse: Self.delivery(sse, times: times), mqtt: Self.delivery([mqtt], times: times),
            flushInterval: stack.configuration.gateway.flushInterval)
    }

    /// Lags of `logs` against the events' recorded `times`; arrivals of other seqs are ignored.
    static func delivery(_ logs: [ArrivalLog], times: [Int64: Date]) -> Delivery {
        var lags: [Double] = []
        var (lost, duplicates) = (0, 0)
        for log in logs {
            var seen = Set<Int64>()
            for (seq, at) in log.entries {
                guard let time = times[seq] else { continue }
                guard seen.insert(seq).inserted else {
                    duplicates += 1
                    continue
                }
                lags.append(at.timeIntervalSince(time))
            }
            lost += times.count - seen.count
        }
        lags.sort()
        func percentile(_ p: Double) -> Double { lags.isEmpty ? .nan : lags[min(lags.count - 1, Int((Double(lags.count) * p).rounded(.up)) - 1)] }
        return Delivery(
            subscribers: logs.count, count: lags.count, p50: percentile(0.5), p99: percentile(0.99), max: lags.last ?? .nan, lost: lost,
            duplicates: duplicates)
    }
}
