import Foundation
import Logging
import Mosquitto
import ServiceLifecycle
import UnixSignals
import UpdraftCore

/// The composition root of `updraft serve`: the store, the managed broker (unless
/// external) and the gateway service, run as one ServiceGroup in dependency order.
public struct GatewayApp: Sendable {
    public let configuration: UpdraftConfiguration
    public let broker: ManagedBroker?
    public let gateway: GatewayService
    private let logger: Logger

    public init(configuration: UpdraftConfiguration, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) throws {
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        self.configuration = configuration
        self.logger = logger
        let store = try UpdraftStoreFactory.open(configuration, logger: logger)
        broker = configuration.mqtt.broker.external ? nil : ManagedBroker(settings: .init(configuration: configuration), logger: logger)
        gateway = try GatewayService(configuration: configuration, store: store, logger: logger, now: now)
    }

    /// Runs until SIGINT or SIGTERM (or until the calling task is cancelled).
    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        if let broker { try await broker.start() }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let broker { services.append(.init(service: broker)) }
        services.append(.init(service: gateway))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: signals, logger: logger))
        do {
            try await group.run()
        } catch {
            broker?.stop()
            throw error
        }
        broker?.stop()
    }
}
