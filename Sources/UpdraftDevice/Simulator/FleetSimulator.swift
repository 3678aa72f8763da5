import CoAP
import Foundation
import Logging
import Mosquitto
import Synchronization
import UpdraftCore

/// Many reference devices in one process, for demos, integration tests and benches:
/// ``UpdraftDeviceAgent``s (MQTT), ``CoAPDeviceAgent``s, or both (``SimulatorConfig/protocol``).
///
/// Devices share a few ``MosquittoEventLoop`` threads and ``CoAPClient``s (never a thread
/// per device), and connect a little apart. Use it structured:
///
/// ```swift
/// let fleet = try FleetSimulator(config: config, logger: logger)
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     group.addTask { await fleet.run() }
///     try await fleet.waitForAll(version: "2.0.0", timeout: .seconds(60))
///     await fleet.stop()
/// }
/// ```
///
/// or with ``start()`` and ``stop()``.
public final class FleetSimulator: Sendable {
    public let config: SimulatorConfig
    /// The devices, in id order.
    public let devices: [any SimulatedDevice]
    private let loops: [MosquittoEventLoop]
    private let coapClients: [CoAPClient]
    /// The image downloads, block by block, on the loops of `coapClients`.
    private let coapDownloadClients: [CoAPClient]
    private let logger: Logger
    private let signals: AsyncStream<Signal>
    private let signalInput: AsyncStream<Signal>.Continuation
    private let state = Mutex(State())

    private enum Signal { case bringOnline, stop }

    private struct State {
        var running = false
        var startedOnline: Set<Int> = []
        var runner: Task<Void, Never>?
    }

    /// Creates the devices and the event loop threads; nothing connects before ``run()``.
    /// - Throws: `UpdraftError` when `idPrefix` makes invalid device ids.
    public init(config: SimulatorConfig, logger: Logger) throws(UpdraftError) {
        self.config = config
        self.logger = logger
        let transports = (0..<config.count).map(config.protocol.transport(ofDevice:))
        let mqttCount = transports.filter { $0 == .mqtt }.count
        let coapCount = config.count - mqttCount
        let loopCount = mqttCount == 0 ? 0 : max(1, config.loopCount ?? min(4, mqttCount))
        loops = (0..<loopCount).map { MosquittoEventLoop(name: "sim-loop-\($0)", logger: logger) }
        let clientCount = coapCount == 0 ? 0 : max(1, config.coapLoopCount ?? min(2, coapCount))
        coapClients = (0..<clientCount).map { _ in CoAPClient(logger: logger) }
        coapDownloadClients = coapClients.map { CoAPClient(configuration: .init(blockTransfers: .byCaller), loop: $0.loop, logger: logger) }
        let ids = try config.deviceIDs()
        var devices: [any SimulatedDevice] = []
        devices.reserveCapacity(config.count)
        for index in 0..<config.count {
            let id = ids[index]
            if transports[index] == .coap {
                let clients = index % clientCount
                devices.append(
                    CoAPDeviceAgent(
                        config: config.coapDevice(index, id: id), client: coapClients[clients],
                        downloads: coapDownloadClients[clients], logger: logger))
            } else {
                devices.append(UpdraftDeviceAgent(config: config.mqttDevice(index, id: id), loop: loops[index % loopCount], logger: logger))
            }
        }
        self.devices = devices
        (signals, signalInput) = AsyncStream.makeStream(of: Signal.self)
    }

    /// The devices that start offline.
    public var offlineAtStart: [any SimulatedDevice] {
        devices.indices.filter(startsOffline).map { devices[$0] }
    }

    private func startsOffline(_ index: Int) -> Bool {
        SimulatorConfig.picks(index, fraction: config.offlineFraction, phase: 0)
    }

    // MARK: Running

    /// Runs the fleet until ``stop()`` or cancellation, then disconnects every device
    /// (saying `offline`) and stops the event loops. Call once.
    public func run() async {
        let alreadyRunning = state.withLock { state in
            defer { state.running = true }
            return state.running
        }
        precondition(!alreadyRunning, "FleetSimulator.run() called twice")
        let online = devices.indices.filter { !startsOffline($0) }
        logger.info(
            "fleet starting",
            metadata: [
                "fleet.devices": "\(devices.count)", "fleet.offline": "\(devices.count - online.count)",
                "fleet.loops": "\(loops.count)", "fleet.coap_clients": "\(coapClients.count)",
            ])

        await withTaskGroup(of: Void.self) { group in
            launch(online, in: &group)
            if let delay = config.offlineDelay, online.count < devices.count {
                group.addTask {
                    guard (try? await Task.sleep(for: delay)) != nil else { return }
                    self.bringOfflineDevicesOnline()
                }
            }
            signals: for await signal in signals {
                switch signal {
                case .bringOnline:
                    launch(devices.indices.filter(startsOffline), in: &group)
                case .stop:
                    break signals
                }
            }
            // Stopped or cancelled: every device says goodbye, then nothing is left to wait for.
            await withTaskGroup(of: Void.self) { stopping in
                for device in devices { stopping.addTask { await device.stop() } }
            }
            group.cancelAll()
        }
        for loop in loops { loop.shutdown() }
        // The download clients run on the others' loops: shut them down first.
        for client in coapDownloadClients { client.shutdown() }
        for client in coapClients { client.shutdown() }
        logger.info("fleet stopped", metadata: ["fleet.snapshot": "\(snapshot())"])
    }

    /// Starts devices not started yet, `connectStagger` apart.
    private func launch(_ indexes: [Int], in group: inout TaskGroup<Void>) {
        let fresh = state.withLock { state in
            let fresh = indexes.filter { !state.startedOnline.contains($0) }
            state.startedOnline.formUnion(fresh)
            return fresh
        }
        for (position, index) in fresh.enumerated() {
            let device = devices[index]
            let delay = config.connectStagger * position
            group.addTask {
                guard (try? await Task.sleep(for: delay)) != nil else { return }
                do {
                    try await device.run()
                } catch {
                    self.logger.error("device stopped", metadata: ["device.id": "\(device.id)", "error": "\(error)"])
                }
            }
        }
    }

    /// Runs ``run()`` in a task of its own; ``stop()`` ends it.
    public func start() {
        state.withLock { state in
            precondition(state.runner == nil, "FleetSimulator.start() called twice")
            state.runner = Task { await self.run() }
        }
    }

    /// Stops the fleet and, when it was started with ``start()``, waits until it is down.
    public func stop() async {
        signalInput.yield(.stop)
        let runner = state.withLock { $0.runner }
        await runner?.value
    }

    /// Connects the devices that started offline (their jobs are waiting on the gateway).
    public func bringOfflineDevicesOnline() {
        signalInput.yield(.bringOnline)
    }

    // MARK: Observing

    public func snapshot() -> FleetSnapshot {
        FleetSnapshot(devices.lazy.map(\.state))
    }

    /// Bytes of firmware all devices have received so far: cheaper to poll than ``snapshot()``.
    public var bytesReceived: Int { devices.reduce(0) { $0 + $1.state.bytesReceived } }

    /// A snapshot per protocol the fleet speaks.
    public func snapshotByTransport() -> [Transport: FleetSnapshot] {
        Dictionary(grouping: devices, by: \.transport).mapValues { FleetSnapshot($0.lazy.map(\.state)) }
    }

    /// Polls the snapshot until `condition` holds.
    /// - Throws: `UpdraftError` `simulator_timeout` (with the last snapshot) when `timeout` passes first;
    ///   `CancellationError`.
    @discardableResult
    public func waitUntil(
        timeout: Duration, pollInterval: Duration = .milliseconds(100), _ condition: @Sendable (FleetSnapshot) -> Bool
    ) async throws -> FleetSnapshot {
        let deadline = ContinuousClock.now + timeout
        while true {
            let snapshot = snapshot()
            if condition(snapshot) { return snapshot }
            guard ContinuousClock.now < deadline else {
                throw UpdraftError("simulator_timeout", "The fleet did not reach the condition within \(timeout): \(snapshot).")
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    /// Waits until every device runs `version` and is online again after its reboot.
    @discardableResult
    public func waitForAll(version: FirmwareVersion, timeout: Duration) async throws -> FleetSnapshot {
        try await waitUntil(timeout: timeout) { $0.count(running: version) == $0.devices && $0.online == $0.devices }
    }
}
