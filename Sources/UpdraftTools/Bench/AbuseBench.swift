import Foundation
import Logging
import Mosquitto
import Synchronization
import UpdraftAdapter
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftMQTT
import UpdraftWire

/// `updraft bench abuse`: what one hostile device costs everybody else. A hog asks for
/// thousands of whole-image windows and never reads its chunks, while a calm device
/// downloads beside it; then a spammer sends a flood of messages the gateway could record
/// (reports for a job that does not exist, announcements of ever new versions). Figures:
/// memory (RSS from /proc) of the gateway (this process) and of the broker, the calm
/// device's time alone and beside the hog, events added and store growth by the flood.
public struct AbuseBench: Sendable {
    public struct Options: Sendable {
        public var windowRequests = 10_000
        public var windowChunks = 64
        public var chunkSize = 65_536
        /// The calm device's image.
        public var imageBytes = 4 << 20
        public var floodMessages = 100_000

        public init(
            windowRequests: Int = 10_000, windowChunks: Int = 64, chunkSize: Int = 65_536, imageBytes: Int = 4 << 20,
            floodMessages: Int = 100_000
        ) {
            (self.windowRequests, self.windowChunks, self.chunkSize) = (windowRequests, windowChunks, chunkSize)
            (self.imageBytes, self.floodMessages) = (imageBytes, floodMessages)
        }
    }

    /// The aims the bench checks (issue 8).
    public struct Aims: Sendable {
        public var gatewayRSSGrowth = 64 << 20
        public var brokerRSSGrowth = 128 << 20
        public var besideOverAlone = 3.0
        public var eventsAdded = 500
        public var storeGrowth = 1 << 20
        public init() {}
    }

    public struct Result: Sendable {
        public var gatewayRSS: (before: Int, peak: Int)
        public var brokerRSS: (before: Int, peak: Int)
        public var calmAloneSeconds: Double
        public var calmBesideSeconds: Double
        public var hogSeconds: Double
        /// Hog requests that reached the gateway (QoS 0: the broker may drop some).
        public var hogHandled: Int
        public var windowsRefused: Int
        public var chunksSent: Int
        public var floodSeconds: Double
        /// Flood messages that reached the gateway (the broker drops what queues beyond its limit).
        public var floodHandled: Int
        public var rateLimited: Int
        public var eventsAdded: Int64
        public var storeGrowth: Int
        /// What missed the aims, in words; empty when all were met.
        public var missed: [String]
    }

    public let options: Options
    public let aims: Aims
    public let logger: Logger

    public init(options: Options, aims: Aims = Aims(), logger: Logger) {
        self.options = options
        self.aims = aims
        self.logger = logger
    }

    public func run(report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        try await LocalStack.with(logger: logger, tune: { c in
            c.mqtt.chunk.max = max(c.mqtt.chunk.max, options.chunkSize)
            c.mqtt.chunk.maxCount = max(c.mqtt.chunk.maxCount, options.windowChunks)
        }) { stack in try await run(on: stack, report: report) }
    }

    private func run(on stack: LocalStack, report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        let gateway = try await stack.startGateway()
        var firmware: [Firmware] = []
        for version in ["2.0", "3.0"] {
            let file = stack.directory + "/abuse-\(version).bin"
            try DeterministicImage.write(options.imageBytes, seed: UInt64(firmware.count + 1), to: file, what: "bench")
            firmware.append(try await stack.operations.addFirmware(file: file, product: "abuse", version: version).firmware)
        }
        var sim = SimulatorConfig(count: 1, product: "abuse", version: "1.0", trustedKeys: try stack.operations.trustedKeys())
        sim.useBroker(stack.brokerOptions(clientID: "-"))
        sim.idPrefix = "calm-"
        sim.rebootDelay = .milliseconds(10)
        try await stack.provision(&sim)
        let calm = try FleetSimulator(config: sim, logger: logger)
        // The hog reads nothing: its inbox fills and its socket stops being read, so it sends at
        // QoS 0 (no PUBACK to read). The spammer subscribes to nothing and sends at QoS 1.
        let hog = try await Self.connect("hog-1", stack: stack, inbox: 8, qos: .atMostOnce, subscribe: true, logger: logger)
        let spammer = try await Self.connect("spam-1", stack: stack, inbox: 8, qos: .atLeastOnce, subscribe: false, logger: logger)
        calm.start()
        do {
            let result = try await measure(stack, gateway, calm, hog, spammer, firmware, report: report)
            await calm.stop()
            await hog.client.disconnect()
            await spammer.client.disconnect()
            return result
        } catch {
            await calm.stop()
            await hog.client.disconnect()
            await spammer.client.disconnect()
            throw error
        }
    }

    private struct Client {
        let client: MosquittoClient
        let topic: String
        let qos: QoS
        func publish(_ kind: String, _ text: String) {
            client.publishNoWait(topic: topic + kind, payload: Array(text.utf8), qos: qos)
        }
    }

    private static func connect(_ id: DeviceID, stack: LocalStack, inbox: Int, qos: QoS, subscribe: Bool, logger: Logger) async throws -> Client {
        var options = stack.brokerOptions(clientID: id.rawValue)
        options.username = id.rawValue
        options.password = try await stack.devicePassword(id)
        options.inboxCapacity = inbox
        let client = MosquittoClient(options: options, logger: logger)
        try await client.connect()
        if subscribe { try await client.subscribe("updraft/d/\(id)/#", qos: .atMostOnce) }
        return Client(client: client, topic: "updraft/d/\(id)/", qos: qos)
    }

    private func measure(
        _ stack: LocalStack, _ gateway: GatewayService, _ calm: FleetSimulator, _ hog: Client, _ spammer: Client,
        _ firmware: [Firmware], report: @escaping @Sendable (String, Double) -> Void
    ) async throws -> Result {
        let counters = gateway.mqtt.counters
        hog.publish("announce", #"{"product":"abuse","version":"1.0"}"#)
        try await calm.waitUntil(timeout: .seconds(60)) { $0.online == 1 }
        try await stack.waitForRegistry(2, "devices") { $0.product == "abuse" }

        report("calm device alone", 0)
        let alone = try await timeUpdate(stack, calm, to: firmware[0])
        let plan = try await stack.operations.createRelease(firmwareID: firmware[0].id, target: .devices(["hog-1"]), allowDowngrade: false)
        guard let job = plan.jobs.first?.id else { throw UpdraftError("bench_setup", "The hog got no job.") }

        report("hog: \(options.windowRequests) windows, calm device beside it", 0)
        let brokerPID = stack.broker.pid
        let sampler = RSSSampler(pids: [nil, brokerPID])
        let sampling = Task { await sampler.run() }
        let received0 = counters["received"]
        let hogStart = ContinuousClock.now
        let window = #"{"job":"\#(job)","offset":0,"count":\#(options.windowChunks),"size":\#(options.chunkSize)}"#
        for _ in 0..<options.windowRequests { hog.publish("download", window) }
        let beside = try await timeUpdate(stack, calm, to: firmware[1])
        // QoS 0 requests the broker dropped never arrive: wait until all came or none for 3 s.
        let hogHandled = try await waitFor(counters, "received", atLeast: received0 + options.windowRequests, quiet: .seconds(3)) - received0
        let hogSeconds = (ContinuousClock.now - hogStart).seconds
        sampling.cancel()
        _ = await sampling.value
        let peaks = sampler.peaks

        report("spammer: \(options.floodMessages) messages", 0)
        let store = stack.operations.store
        let sequence0 = try await store.lastEventSequence()
        let size0 = Self.storeSize(stack)
        let received1 = counters["received"]
        let floodStart = ContinuousClock.now
        for i in 0..<options.floodMessages {
            if i % 2 == 0 {
                spammer.publish("progress", #"{"job":"jnothere","state":"verified"}"#)
            } else {
                spammer.publish("announce", #"{"product":"abuse","version":"9.\#(i)"}"#)
            }
        }
        let floodHandled = try await waitFor(counters, "received", atLeast: received1 + options.floodMessages, quiet: .seconds(10)) - received1
        let floodSeconds = (ContinuousClock.now - floodStart).seconds
        // The engine writes in batches every few milliseconds.
        try await Task.sleep(for: .milliseconds(500))
        let eventsAdded = try await store.lastEventSequence() - sequence0
        let storeGrowth = Self.storeSize(stack) - size0

        var result = Result(
            gatewayRSS: (peaks[0].before, peaks[0].peak), brokerRSS: (peaks[1].before, peaks[1].peak),
            calmAloneSeconds: alone, calmBesideSeconds: beside, hogSeconds: hogSeconds, hogHandled: hogHandled,
            windowsRefused: counters["rejected.too_many_windows"], chunksSent: counters["chunks.sent"],
            floodSeconds: floodSeconds, floodHandled: floodHandled, rateLimited: counters["rejected.rate_limited"],
            eventsAdded: eventsAdded, storeGrowth: storeGrowth, missed: [])
        result.missed = check(result)
        return result
    }

    private func check(_ r: Result) -> [String] {
        var missed: [String] = []
        let mib = { (bytes: Int) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
        if r.gatewayRSS.peak - r.gatewayRSS.before >= aims.gatewayRSSGrowth {
            missed.append("gateway RSS grew \(mib(r.gatewayRSS.peak - r.gatewayRSS.before)) (aim < \(mib(aims.gatewayRSSGrowth)))")
        }
        if r.brokerRSS.peak - r.brokerRSS.before >= aims.brokerRSSGrowth {
            missed.append("broker RSS grew \(mib(r.brokerRSS.peak - r.brokerRSS.before)) (aim < \(mib(aims.brokerRSSGrowth)))")
        }
        if r.calmBesideSeconds > aims.besideOverAlone * r.calmAloneSeconds {
            missed.append(String(format: "calm device took %.2f s beside the hog, %.2f s alone (aim <= %.0fx)", r.calmBesideSeconds, r.calmAloneSeconds, aims.besideOverAlone))
        }
        if r.eventsAdded > aims.eventsAdded { missed.append("the flood added \(r.eventsAdded) events (aim <= \(aims.eventsAdded))") }
        if r.storeGrowth >= aims.storeGrowth { missed.append("the store grew \(mib(r.storeGrowth)) (aim < \(mib(aims.storeGrowth)))") }
        return missed
    }

    /// From a release to the calm device running it.
    private func timeUpdate(_ stack: LocalStack, _ calm: FleetSimulator, to image: Firmware) async throws -> Double {
        let start = ContinuousClock.now
        let plan = try await stack.operations.createRelease(firmwareID: image.id, target: .devices(calm.devices.map(\.id)), allowDowngrade: false)
        guard !plan.jobs.isEmpty else { throw UpdraftError("bench_setup", "The release of \(image.id) made no job for the calm device.") }
        let settled = try await calm.waitUntil(timeout: .seconds(300)) { $0.count(running: image.version) == 1 || !$0.failures.isEmpty }
        guard settled.failures.isEmpty else { throw UpdraftError("bench_failed", "The calm device failed its update: \(settled)") }
        let seconds = (ContinuousClock.now - start).seconds
        // Not timed: the next release skips a device whose job the gateway has not closed yet.
        let deadline = ContinuousClock.now + .seconds(60)
        while try await !stack.operations.store.jobs(release: plan.release.id).allSatisfy({ $0.state == .succeeded }) {
            guard ContinuousClock.now < deadline else { throw UpdraftError("bench_stalled", "The calm device's job did not succeed in the store.") }
            try await Task.sleep(for: .milliseconds(10))
        }
        return seconds
    }

    /// Waits until the counter reaches `target` or stays the same for `quiet`; returns it.
    private func waitFor(_ counters: GatewayCounters, _ key: String, atLeast target: Int, quiet: Duration) async throws -> Int {
        var last = counters[key]
        var changed = ContinuousClock.now
        while last < target && ContinuousClock.now - changed < quiet {
            try await Task.sleep(for: .milliseconds(20))
            let now = counters[key]
            if now != last { (last, changed) = (now, .now) }
        }
        return last
    }

    private static func storeSize(_ stack: LocalStack) -> Int {
        let path = stack.configuration.resolvedSQLitePath
        return [path, path + "-wal"].reduce(0) { total, file in
            total + ((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0)
        }
    }
}

/// Resident memory of processes, sampled every 20 ms until cancelled: the first sample and
/// the highest.
final class RSSSampler: Sendable {
    private let pids: [Int32?]
    private let state: Mutex<[(before: Int, peak: Int)]>

    /// - Parameter pids: `nil` is this process.
    init(pids: [Int32?]) {
        self.pids = pids
        let first = pids.map { Self.rss(pid: $0) ?? 0 }
        state = Mutex(first.map { ($0, $0) })
    }

    var peaks: [(before: Int, peak: Int)] { state.withLock { $0 } }

    func run() async {
        while !Task.isCancelled {
            sample()
            try? await Task.sleep(for: .milliseconds(20))
        }
        sample()
    }

    private func sample() {
        let now = pids.map { Self.rss(pid: $0) ?? 0 }
        state.withLock { peaks in
            for index in peaks.indices { peaks[index].peak = max(peaks[index].peak, now[index]) }
        }
    }

    /// VmRSS of `pid` (this process when `nil`) in bytes, from /proc.
    static func rss(pid: Int32?) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid.map(String.init) ?? "self")/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return nil }
        return kib * 1024
    }
}
