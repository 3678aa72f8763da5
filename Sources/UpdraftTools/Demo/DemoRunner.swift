import Foundation
import Logging
import UpdraftApp
import UpdraftCore
import UpdraftDevice

/// `updraft demo`: the whole path on one machine, from a firmware file to every device
/// confirming its new version.
public struct DemoRunner: Sendable {
    public struct Options: Sendable {
        public var devices = 50
        public var offline = 10
        public var imageBytes = 256 * 1024
        public var chunkSize = 4096
        /// What the devices speak; mixed alternates MQTT and CoAP devices.
        public var `protocol`: FleetProtocol = .mixed
        /// Block2 size of the CoAP devices.
        public var blockSize = 1024
        public var timeout: Duration = .seconds(180)
        public var keepDirectory: String?
        public init() {}
    }

    /// What the demo reports while it runs.
    public struct Progress: Sendable {
        public var phase: String
        public var jobs: [JobState: Int]
        public var total: Int
        public var percent: Double
    }

    public struct Summary: Sendable {
        public var jobs: [JobState: Int]
        /// The jobs by the transport their device announced over.
        public var jobsByTransport: [Transport: [JobState: Int]]
        /// Devices by transport, as the gateway's registry has them.
        public var devicesByTransport: [Transport: Int]
        /// Whole images served over CoAP (Block2 transfers).
        public var coapDownloads: Int
        public var failures: [String]
        public var bytesSent: Int
        public var seconds: Double
        public var devices: Int
        public var allSucceeded: Bool { jobs[.succeeded] == devices }
    }

    public let options: Options
    public let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func run(report: @escaping @Sendable (Progress) -> Void) async throws -> Summary {
        let started = ContinuousClock.now
        let stack = try await LocalStack(directory: options.keepDirectory, logger: logger)
        do {
            let summary = try await run(on: stack, started: started, report: report)
            await stack.stop()
            return summary
        } catch {
            await stack.stop()
            throw error
        }
    }

    private func run(on stack: LocalStack, started: ContinuousClock.Instant, report: @escaping @Sendable (Progress) -> Void) async throws -> Summary {
        let ops = stack.operations
        report(Progress(phase: "starting gateway", jobs: [:], total: options.devices, percent: 0))
        let gateway = try await stack.startGateway()

        // A demo image: deterministic bytes, signed like any release.
        let file = stack.directory + "/demo-1.1.0.bin"
        try DeterministicImage.write(options.imageBytes, seed: 2026, to: file, what: "demo")
        let firmware = try await ops.addFirmware(file: file, product: "demo-thermo", version: "1.1.0").firmware

        let fleet = try await startFleet(on: stack, report: report)
        let ids = fleet.devices.map(\.id)
        let plan = try await ops.createRelease(firmwareID: firmware.id, target: .devices(ids), allowDowngrade: false)
        let release = plan.release.id
        logger.info("demo release created", metadata: ["release.id": "\(release)", "jobs": "\(plan.jobs.count)"])

        try await follow(release, of: fleet, store: ops.store, report: report)
        let final = try await ops.store.jobs(release: release)
        let jobs = Dictionary(grouping: final, by: \.state).mapValues(\.count)
        let failures = final.filter { $0.state == .failed }.map { "\($0.deviceID): \($0.failure?.rawValue ?? "?") \($0.detail ?? "")" }
        let bytes = gateway.mqtt.counters["bytes.sent"]
        await fleet.stop()
        let transports = Dictionary(
            try await ops.store.devices().compactMap { d in d.transport.map { (d.id, $0) } }, uniquingKeysWith: { a, _ in a })
        let jobsByTransport = Dictionary(grouping: final) { transports[$0.deviceID] ?? .mqtt }
            .mapValues { Dictionary(grouping: $0, by: \.state).mapValues(\.count) }
        let devicesByTransport = Dictionary(grouping: ids) { transports[$0] ?? .mqtt }.mapValues(\.count)
        return Summary(
            jobs: jobs, jobsByTransport: jobsByTransport, devicesByTransport: devicesByTransport,
            coapDownloads: gateway.coap?.counters["firmware"] ?? 0, failures: failures, bytesSent: bytes,
            seconds: (ContinuousClock.now - started).seconds, devices: options.devices)
    }

    /// Starts the simulated fleet and waits for the devices that start online.
    private func startFleet(on stack: LocalStack, report: @escaping @Sendable (Progress) -> Void) async throws -> FleetSimulator {
        var sim = SimulatorConfig(
            count: options.devices, product: "demo-thermo", version: "1.0.0", trustedKeys: try stack.operations.trustedKeys())
        sim.useBroker(stack.brokerOptions(clientID: "-"))
        sim.protocol = options.protocol
        sim.coapPort = stack.configuration.coap.port
        sim.blockSize = options.blockSize
        sim.dialect = stack.dialect
        sim.offlineFraction = Double(options.offline) / Double(max(options.devices, 1))
        sim.chunkSize = options.chunkSize
        sim.requestTimeout = .seconds(2)
        try await stack.provision(&sim)
        let fleet = try FleetSimulator(config: sim, logger: logger)
        fleet.start()
        let onlineAtStart = options.devices - fleet.offlineAtStart.count
        report(Progress(phase: "devices connecting", jobs: [:], total: options.devices, percent: 0))
        try await fleet.waitUntil(timeout: .seconds(60)) { $0.online >= onlineAtStart }
        return fleet
    }

    /// Reports the release's jobs until all ended or the demo's time is up; brings the
    /// offline devices online once most online ones are on their way.
    private func follow(
        _ release: ReleaseID, of fleet: FleetSimulator, store: any StatusStore, report: @escaping @Sendable (Progress) -> Void
    ) async throws {
        let onlineAtStart = options.devices - fleet.offlineAtStart.count
        let deadline = ContinuousClock.now + options.timeout
        var broughtOnline = false
        while ContinuousClock.now < deadline {
            let current = try await store.jobs(release: release)
            let jobs = Dictionary(grouping: current, by: \.state).mapValues(\.count)
            let done = current.filter(\.state.isTerminal).count
            let percent = current.isEmpty ? 0 : Double(current.map { $0.state.isTerminal ? 100 : $0.progress }.reduce(0, +)) / Double(current.count)
            if !broughtOnline, done + (jobs[.installed] ?? 0) + (jobs[.installing] ?? 0) >= onlineAtStart / 2 {
                fleet.bringOfflineDevicesOnline()
                broughtOnline = true
            }
            report(Progress(
                phase: broughtOnline ? "updating (offline devices back)" : "updating (\(options.devices - onlineAtStart) devices offline)",
                jobs: jobs, total: current.count, percent: percent))
            if done == current.count { break }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
