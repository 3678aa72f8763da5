import Foundation
import Logging
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftWire
import UpdraftTestSupport
import UpdraftTools

extension Operations {
    /// Provisions the devices of `sim` (for tests that run `updraft serve` themselves)
    /// and waits until the broker of this data directory accepts them.
    func provision(_ sim: inout SimulatorConfig) async throws {
        let accounts = try provisionDevices(try sim.deviceIDs())
        sim.passwords = Dictionary(uniqueKeysWithValues: accounts.map { (DeviceID(unchecked: $0.username), $0.password) })
        if let probe = accounts.last { try await waitUntilBrokerAccepts(probe, port: sim.brokerPort) }
    }
}

/// The environment that puts the managed broker of a test's `updraft serve` on `port`:
/// TLS with the data directory's fleet CA, no mutual-TLS listener (one free port per test).
func servedBroker(port: Int) -> [String: String] {
    ["UPDRAFT_MQTT_BROKER_TLS_PORT": "\(port)", "UPDRAFT_MQTT_BROKER_MTLS_PORT": "0"]
}

extension UpdraftConfiguration {
    /// The configuration of data directory `dir` served with ``servedBroker(port:)``.
    static func served(_ dir: String, port: Int) -> UpdraftConfiguration {
        var configuration = UpdraftConfiguration()
        configuration.dataDirectory = dir
        (configuration.mqtt.broker.tlsPort, configuration.mqtt.broker.mtlsPort) = (port, 0)
        return configuration
    }
}

/// A whole Updraft on loopback (managed mosquitto on a free port, SQLite file, gateway)
/// plus helpers to add firmware, run simulated devices and wait for jobs.
struct Harness {
    let stack: LocalStack
    var ops: Operations { stack.operations }
    static let logger: Logger = {
        var logger = Logger(label: "updraft.test")
        logger.logLevel = ProcessInfo.processInfo.environment["UPDRAFT_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
        return logger
    }()

    static func start(
        gateway: Bool = true, tune: (inout UpdraftConfiguration) -> Void = { _ in }, dialect: (any WireDialect)? = nil
    ) async throws -> Harness {
        let harness = Harness(stack: try await LocalStack(logger: logger, tune: tune, dialect: dialect))
        if gateway { try await harness.stack.startGateway() }
        return harness
    }

    /// Runs `body`, then stops everything the harness started, whatever happened.
    static func with(
        gateway: Bool = true, tune: (inout UpdraftConfiguration) -> Void = { _ in }, dialect: (any WireDialect)? = nil,
        _ body: (Harness) async throws -> Void
    ) async throws {
        let harness = try await start(gateway: gateway, tune: tune, dialect: dialect)
        do {
            try await body(harness)
        } catch {
            await harness.stack.stop()
            throw error
        }
        await harness.stack.stop()
    }

    /// Adds a deterministic image of `size` bytes.
    func addFirmware(product: String = "thermo", version: String, size: Int = 64 * 1024, seed: UInt64 = 1) async throws -> (Firmware, [UInt8]) {
        let file = stack.directory + "/fw-\(product)-\(version).bin"
        let bytes = try DeterministicImage.write(size, seed: seed, to: file, what: "test")
        return (try await ops.addFirmware(file: file, product: product, version: version).firmware, bytes)
    }

    /// A fleet of simulated devices, each provisioned with its MQTT password.
    func fleet(_ count: Int, prefix: String = "dev-", product: String = "thermo", version: String = "1.0", tune: (inout SimulatorConfig) -> Void = { _ in }) async throws -> FleetSimulator {
        var config = SimulatorConfig(count: count, product: try ProductID(validating: product), version: try FirmwareVersion(validating: version), trustedKeys: try ops.trustedKeys())
        config.useBroker(stack.brokerOptions(clientID: "-"))
        config.dialect = stack.dialect
        config.idPrefix = prefix
        config.requestTimeout = .milliseconds(800)
        config.rebootDelay = .milliseconds(100)
        config.retainInstalledImages = true
        tune(&config)
        try await stack.provision(&config)
        return try FleetSimulator(config: config, logger: Self.logger)
    }

    /// Polls the store until `condition` holds for the release's jobs.
    @discardableResult
    func waitForJobs(_ release: ReleaseID, timeout: Duration = .seconds(90), _ condition: ([Job]) -> Bool) async throws -> [Job] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let jobs = try await ops.store.jobs(release: release)
            if condition(jobs) { return jobs }
            if ContinuousClock.now > deadline {
                let states = Dictionary(grouping: jobs, by: \.state).mapValues(\.count)
                throw UpdraftError("test_timeout", "Jobs of \(release) did not reach the condition: \(states)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Devices count themselves online before the gateway has written them down (batched
    /// every few milliseconds); a release made in between would not know them yet.
    func waitUntilRegistered(_ count: Int, timeout: Duration = .seconds(30)) async throws {
        try await eventually(timeout: timeout, "\(count) announced devices in the registry") {
            try await ops.store.devices().filter { $0.online && $0.product != nil }.count >= count
        }
    }

    @discardableResult
    func waitForAllSucceeded(_ release: ReleaseID, timeout: Duration = .seconds(90)) async throws -> [Job] {
        try await waitForJobs(release, timeout: timeout) { jobs in !jobs.isEmpty && jobs.allSatisfy { $0.state == .succeeded } }
    }

    /// Releases `firmware` to every device of product thermo and waits until each of
    /// the `count` devices succeeded and runs `image`; returns the jobs.
    func updateEveryDevice(
        of fleet: FleetSimulator, count: Int, to firmware: Firmware, image: [UInt8]
    ) async throws -> (ReleasePlan, [Job]) {
        let plan = try await ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
        #expect(plan.jobs.count == count)
        let jobs = try await waitForAllSucceeded(plan.release.id)
        #expect(jobs.allSatisfy { $0.progress == 100 && $0.failure == nil })
        try await fleet.waitForAll(version: firmware.version, timeout: .seconds(30))
        for device in fleet.devices {
            #expect(await device.installedImage == image, "\(device.id) (\(device.transport))")
        }
        return (plan, jobs)
    }

    /// A started fleet of `count` devices, once the registry has them all.
    func registeredFleet(
        _ count: Int, prefix: String = "dev-", tune: (inout SimulatorConfig) -> Void = { _ in }
    ) async throws -> FleetSimulator {
        let fleet = try await self.fleet(count, prefix: prefix, tune: tune)
        fleet.start()
        try await waitUntilRegistered(count)
        return fleet
    }

    /// Starts `fleet` and waits until `online` devices are connected and in the registry.
    func start(_ fleet: FleetSimulator, online: Int) async throws {
        fleet.start()
        try await fleet.waitUntil(timeout: .seconds(30)) { $0.online == online }
        try await waitUntilRegistered(online)
    }

    /// Releases `firmware` to every device of `fleet`, of which `offline` start offline:
    /// the online ones succeed while the offline ones' jobs wait queued; brought online,
    /// they succeed too.
    func releaseWithDevicesOffline(_ firmware: Firmware, to fleet: FleetSimulator, offline count: Int) async throws {
        try await start(fleet, online: fleet.devices.count - count)
        let ids = fleet.devices.map(\.id)
        let offline = Set(fleet.offlineAtStart.map(\.id))
        #expect(offline.count == count)
        let plan = try await ops.createRelease(firmwareID: firmware.id, target: .devices(ids), allowDowngrade: false)
        #expect(plan.jobs.count == ids.count)
        #expect(Set(plan.unknownDevices) == offline)

        let jobs = try await waitForJobs(plan.release.id) { jobs in
            jobs.filter { !offline.contains($0.deviceID) }.allSatisfy { $0.state == .succeeded }
        }
        #expect(jobs.filter { offline.contains($0.deviceID) }.allSatisfy { $0.state == .queued })

        fleet.bringOfflineDevicesOnline()
        try await waitForAllSucceeded(plan.release.id)
    }

    /// Every job went the whole way, each state once, in order, and none was refused.
    func expectEveryJobTookTheWholePath(_ jobs: [Job], events: [UpdraftEvent]) {
        for job in jobs {
            let path = events.filter { $0.jobID == job.id && $0.kind == .jobTransition }.compactMap(\.to)
            let distinct = path.reduce(into: [JobState]()) { if $0.last != $1 { $0.append($1) } }
            #expect(distinct == [.notified, .downloading, .downloaded, .verified, .installing, .installed, .succeeded], "\(job.deviceID): \(distinct)")
        }
        #expect(!events.contains { $0.kind == .jobRefused })
    }
}
