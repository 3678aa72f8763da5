import Foundation
import Logging
import LoopbackPorts
import Mosquitto
import ServiceLifecycle
import Synchronization
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftWire

/// A whole Updraft on loopback in one folder: managed mosquitto on a free port, the
/// store, a release key and a gateway that can be stopped and started again. Used by
/// `updraft demo`, `updraft bench` and the integration tests.
public final class LocalStack: Sendable {
    public let configuration: UpdraftConfiguration
    public let broker: ManagedBroker
    public let operations: Operations
    public let directory: String
    /// What the broker's ACL and the gateway speak.
    public let dialect: any WireDialect
    private let logger: Logger
    private let removeOnStop: Bool
    /// One gateway per data directory, as for `updraft serve`.
    private let lock: DataDirectoryLock
    /// Removes the temporary folder if this process dies before `stop()`.
    private let folderGuard: FolderGuard?
    private let running = Mutex<Running?>(nil)
    /// Passwords of the devices provisioned so far, by id.
    private let passwords = Mutex<[DeviceID: String]>([:])

    /// A started gateway in its own service group, so that stopping it is a graceful
    /// shutdown (it writes what it holds), as SIGTERM is for `updraft serve`.
    private struct Running: Sendable {
        let task: Task<Void, any Error>
        let group: ServiceGroup
        let service: GatewayService
    }

    /// - Parameters:
    ///   - directory: the data folder; nil makes a temporary one, removed by `stop()`.
    ///   - tune: adjusts the configuration before anything starts.
    ///   - dialect: nil: today's protocol under the configured prefix.
    public init(
        directory: String? = nil, logger: Logger, tune: (inout UpdraftConfiguration) -> Void = { _ in },
        dialect: (any WireDialect)? = nil
    ) async throws {
        let dir = directory ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("updraft-\(UUID().uuidString.prefix(8))").path
        removeOnStop = directory == nil
        self.directory = dir
        self.logger = logger
        var configuration = UpdraftConfiguration()
        configuration.dataDirectory = dir
        // TLS with passwords and mutual TLS on free ports; no plain listener unless tuned.
        configuration.mqtt.broker.tlsPort = PortProbe.freePort()
        configuration.mqtt.broker.mtlsPort = PortProbe.freePort()
        // CoAP on free loopback UDP ports; plain CoAP devices name themselves (?d=).
        configuration.coap.port = PortProbe.freeUDPPort()
        configuration.coap.securePort = PortProbe.freeUDPPort()
        configuration.coap.allowUnauthenticated = true
        // The HTTP API off (its default port is fixed): a stack that wants it tunes a free port.
        configuration.http.port = 0
        tune(&configuration)
        self.configuration = configuration
        self.dialect = dialect ?? configuration.dialect
        try DataDirectory.create(dir)
        let folderGuard = removeOnStop ? try FolderGuard(directory: dir, pidFile: configuration.path("broker/mosquitto.pid")) : nil
        let broker = ManagedBroker(settings: .init(configuration: configuration, dialect: self.dialect), logger: logger)
        do {
            lock = try DataDirectoryLock(directory: dir)
            operations = try Operations(configuration: configuration, logger: logger)
            if (try? operations.signingKey()) == nil { _ = try operations.generateKeys(force: false) }
            try await broker.start()
        } catch {
            // Nothing of a stack that failed to start stays behind.
            broker.stop()
            if removeOnStop {
                try? FileManager.default.removeItem(atPath: dir)
                folderGuard?.dismiss()
            }
            throw error
        }
        self.broker = broker
        self.folderGuard = folderGuard
    }

    /// Runs `body` on a new stack in a temporary folder and stops the stack afterwards,
    /// whatever happened.
    public static func with<T: Sendable>(
        logger: Logger, tune: (inout UpdraftConfiguration) -> Void = { _ in }, _ body: (LocalStack) async throws -> T
    ) async throws -> T {
        let stack = try await LocalStack(logger: logger, tune: tune)
        do {
            let result = try await body(stack)
            await stack.stop()
            return result
        } catch {
            await stack.stop()
            throw error
        }
    }

    /// Starts a gateway (a new one each time, as after a process restart).
    @discardableResult
    public func startGateway(now: @escaping @Sendable () -> Date = { Date() }) async throws -> GatewayService {
        let store = try UpdraftStoreFactory.open(configuration, logger: logger)
        let service = try GatewayService(configuration: configuration, store: store, logger: logger, now: now, dialect: dialect)
        let group = ServiceGroup(services: [service], logger: logger)
        let task = Task { try await group.run() }
        running.withLock { $0 = Running(task: task, group: group, service: service) }
        // Ready when the engine has loaded and the MQTT subscriptions are in place (seconds
        // normally; the bound is for a machine running the whole test suite on two cores).
        let deadline = ContinuousClock.now + .seconds(60)
        while !service.isReady {
            if ContinuousClock.now > deadline { throw UpdraftError("gateway_start_timeout", "The gateway did not get ready within 60 s; see its log above (broker reachable? store writable?).") }
            try await Task.sleep(for: .milliseconds(10))
        }
        return service
    }

    public var gateway: GatewayService? { running.withLock { $0?.service } }

    /// Stops the gateway: shuts it down gracefully (it writes what it holds), waits for it.
    public func stopGateway() async {
        guard let current = running.withLock({ r -> Running? in defer { r = nil }; return r }) else { return }
        await current.group.triggerGracefulShutdown()
        _ = await current.task.result
    }

    /// Stops everything and removes the temporary folder.
    public func stop() async {
        await stopGateway()
        broker.stop()
        if removeOnStop {
            try? FileManager.default.removeItem(atPath: directory)
            folderGuard?.dismiss()
        }
    }

    /// Where a client of this machine connects with a password: TLS on the TLS port with
    /// the fleet CA, or the plain loopback port when the stack was tuned to have one.
    public func brokerOptions(clientID: String) -> MosquittoOptions { configuration.brokerOptions(clientID: clientID) }
    /// The port of ``brokerOptions(clientID:)``.
    public var brokerPort: Int { brokerOptions(clientID: "-").port }
    /// The CA file that verifies the broker.
    public var caFile: String { FleetPKI(configuration: configuration).caFile }

    /// The MQTT passwords of `ids`, provisioning those not provisioned yet (once each: a
    /// new password would lock out a device already connected) and waiting until the
    /// broker accepts them. Empty when the broker does not check passwords.
    public func devicePasswords(_ ids: [DeviceID]) async throws -> [DeviceID: String] {
        guard configuration.managedBrokerAuthenticates else { return [:] }
        let known = passwords.withLock { $0 }
        let new = Array(Set(ids.filter { known[$0] == nil })).sorted()
        let accounts = try operations.provisionDevices(new)
        var fresh: [DeviceID: String] = [:]
        for account in accounts { fresh[DeviceID(unchecked: account.username)] = account.password }
        if let probe = accounts.last { try await operations.waitUntilBrokerAccepts(probe) }
        return passwords.withLock { all in
            all.merge(fresh) { _, new in new }
            return all.filter { ids.contains($0.key) }
        }
    }

    /// `ids`' passwords in `sim` (see ``devicePasswords(_:)``).
    public func provision(_ sim: inout SimulatorConfig) async throws {
        sim.passwords = try await devicePasswords(sim.deviceIDs())
    }

    /// The password of one device, provisioned on first use.
    public func devicePassword(_ id: DeviceID) async throws -> String? {
        try await devicePasswords([id])[id]
    }

    /// Waits until the registry (the store the gateway writes in batches) holds `count`
    /// online devices that match: a release by product only finds devices registered.
    public func waitForRegistry(
        _ count: Int, _ what: String, timeout: Duration = .seconds(60), matching: @escaping @Sendable (Device) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await operations.store.devices().filter({ $0.online && matching($0) }).count < count {
            guard ContinuousClock.now < deadline else {
                throw UpdraftError("registry_timeout", "The gateway did not register \(count) \(what) within \(timeout).")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
