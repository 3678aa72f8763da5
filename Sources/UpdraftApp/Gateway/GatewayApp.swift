import Foundation
import Logging
import Mosquitto
import ServiceLifecycle
import UnixSignals
import UpdraftCore
import UpdraftStore

/// The composition root of `updraft serve`: the store, the managed broker (unless
/// external) and the gateway service, run as one ServiceGroup in dependency order.
public struct GatewayApp: Sendable {
    public let configuration: UpdraftConfiguration
    public let broker: ManagedBroker?
    public let gateway: GatewayService
    /// Held while this value lives: one gateway per data directory.
    public let lock: DataDirectoryLock
    private let store: any StatusStore
    private let logger: Logger

    public init(configuration: UpdraftConfiguration, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) throws {
        try DataDirectory.create(configuration.dataDirectory)
        // Before anything touches the store or the broker: a second gateway on the same
        // data directory must leave the first (and its broker) alone.
        lock = try DataDirectoryLock(directory: configuration.dataDirectory)
        self.configuration = configuration
        self.logger = logger
        let store = try UpdraftStoreFactory.open(configuration, access: .serve, logger: logger)
        self.store = store
        broker = configuration.mqtt.broker.external ? nil : ManagedBroker(settings: .init(configuration: configuration), logger: logger)
        gateway = try GatewayService(configuration: configuration, store: store, logger: logger, now: now)
    }

    /// Runs until SIGINT or SIGTERM (or until the calling task is cancelled).
    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        await checkImages()
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

    /// The images of jobs still to be served are on disk and match their digests: a
    /// missing or damaged file is reported at start (once, naming the firmware), not by
    /// the first device that downloads it.
    private func checkImages() async {
        do {
            let images = FirmwareImageCache(store: try FileImageStore(directory: configuration.imagesDirectory), capacityBytes: 0)
            for id in Set(try await store.activeJobs().map(\.firmwareID)).sorted() {
                guard let firmware = try await store.firmware(id: id) else { continue }
                do {
                    _ = try images.image(sha256: firmware.sha256)
                } catch let error as UpdraftError {
                    logger.error(
                        "firmware image of active jobs is unusable; their devices cannot download it",
                        metadata: ["firmware.id": "\(firmware.id)", "error.code": "\(error.code)", "error": "\(error.message)"])
                }
            }
        } catch {
            logger.warning("could not check firmware images", metadata: ["error": "\(error)"])
        }
    }
}
