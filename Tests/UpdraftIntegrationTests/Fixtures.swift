import Foundation
import Logging
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftWire

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
        var generator = SplitMix64(seed: seed)
        let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let file = stack.directory + "/fw-\(product)-\(version).bin"
        FileManager.default.createFile(atPath: file, contents: Data(bytes))
        return (try await ops.addFirmware(file: file, product: product, version: version).firmware, bytes)
    }

    func fleet(_ count: Int, prefix: String = "dev-", product: String = "thermo", version: String = "1.0", tune: (inout SimulatorConfig) -> Void = { _ in }) throws -> FleetSimulator {
        var config = SimulatorConfig(count: count, product: try ProductID(validating: product), version: try FirmwareVersion(validating: version), releaseKey: try ops.publicKey())
        config.brokerPort = stack.brokerPort
        config.dialect = stack.dialect
        config.idPrefix = prefix
        config.requestTimeout = .milliseconds(800)
        config.rebootDelay = .milliseconds(100)
        config.retainInstalledImages = true
        tune(&config)
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

    func waitForAllSucceeded(_ release: ReleaseID, timeout: Duration = .seconds(90)) async throws -> [Job] {
        try await waitForJobs(release, timeout: timeout) { jobs in !jobs.isEmpty && jobs.allSatisfy { $0.state == .succeeded } }
    }
}

/// Waits for a condition on something that is not the store.
func eventually(timeout: Duration = .seconds(30), _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        if ContinuousClock.now > deadline { throw UpdraftError("test_timeout", "Timed out waiting for \(what).") }
        try await Task.sleep(for: .milliseconds(25))
    }
}
