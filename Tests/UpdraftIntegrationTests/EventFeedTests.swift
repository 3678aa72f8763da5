import Foundation
import LoopbackPorts
import Mosquitto
import Synchronization
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport
import UpdraftTools

/// A backend on `updraft/events` with a persistent QoS 1 session gets the whole event log,
/// whatever fails around the real `updraft serve` process.
@Suite(.timeLimit(.minutes(4))) struct EventFeedTests {
    /// What a backend received: the seq of every event, in arrival order.
    final class Backend: Sendable {
        let client: MosquittoClient
        let loop: MosquittoEventLoop
        private let received = Mutex<[(seq: Int64, kind: String)]>([])
        private let reader = Mutex<Task<Void, Never>?>(nil)

        init(options: MosquittoOptions, account: BrokerCredentials.Account) {
            loop = MosquittoEventLoop(name: "backend")
            var options = options
            (options.username, options.password) = (account.username, account.password)
            options.cleanSession = false
            client = MosquittoClient(options: options, loop: loop, logger: Harness.logger)
        }

        func start(topic: String) async throws {
            try await client.connect()
            try await client.subscribe(topic, qos: .atLeastOnce)
            let client = self.client
            reader.withLock {
                $0 = Task {
                    for await message in client.messages {
                        guard
                            let object = try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any],
                            let seq = (object["seq"] as? NSNumber)?.int64Value, let kind = object["kind"] as? String
                        else { continue }
                        self.received.withLock { $0.append((seq, kind)) }
                    }
                }
            }
        }

        var events: [(seq: Int64, kind: String)] { received.withLock { $0 } }
        var distinct: Set<Int64> { Set(events.map(\.seq)) }

        func stop() async {
            await client.disconnect()
            await reader.withLock { $0 }?.value
            loop.shutdown()
        }
    }

    static func brokerPID(_ dir: String) -> Int32? {
        (try? String(contentsOfFile: dir + "/broker/mosquitto.pid", encoding: .utf8))
            .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Releases to devices that never connect: events written by the CLI (another process
    /// than the gateway), in bulk.
    static func cliRelease(_ ops: Operations, _ firmware: Firmware, _ tag: String) async throws {
        let ids = try (1...15).map { try DeviceID(validating: "ghost-\(tag)-\($0)") }
        _ = try await ops.createRelease(firmwareID: firmware.id, target: .devices(ids), allowDowngrade: false)
    }

    @Test func everyEventReachesAPersistentBackendAcrossBrokerAndGatewayKillsTakeoverAndCLIWrites() async throws {
        let binary = try #require(ProcessRestartTests.updraftBinary, "build the updraft executable first")
        let dir = try makeTemporaryDirectory(prefix: "updraft-feed").path
        var configuration = UpdraftConfiguration()
        configuration.dataDirectory = dir
        configuration = .served(dir, port: PortProbe.freePort())
        let port = configuration.mqtt.broker.tlsPort
        let ops = try Operations(configuration: configuration, logger: Harness.logger)
        _ = try ops.generateKeys(force: false)
        try DeterministicImage.write(300_000, seed: 4, to: dir + "/fw.bin", what: "test")

        let restart = ProcessRestartTests()
        var gateways = [try restart.serve(binary, dataDir: dir, port: port)]
        let backend = Backend(options: configuration.brokerOptions(clientID: "backend-events-1"), account: try ops.serviceAccounts().events)
        var fleet: FleetSimulator?
        defer {
            for p in gateways where p.isRunning { kill(p.pid, SIGKILL) }
            if let pid = Self.brokerPID(dir) { kill(pid, SIGKILL) }
            try? FileManager.default.removeItem(atPath: dir)
        }
        try await eventually(timeout: .seconds(30), "the managed broker") { Self.brokerPID(dir) != nil && PortProbe.accepts(host: "127.0.0.1", port: port) }
        try await backend.start(topic: configuration.dialect.eventsTopic)
        // The broker keeps a persistent session across its own crash only once it saved it
        // (autosave, or SIGUSR1 as here): the backend's subscription is part of the setup.
        let db = dir + "/broker/mosquitto.db"
        try? FileManager.default.removeItem(atPath: db)
        kill(try #require(Self.brokerPID(dir)), SIGUSR1)
        try await eventually(timeout: .seconds(10), "mosquitto to save its sessions") { FileManager.default.fileExists(atPath: db) }
        // The first event: the log is empty until the backend listens (what was published
        // before a backend ever subscribed is in `updraft events`, not in its session).
        #expect(try await ops.store.lastEventSequence() == 0)
        let firmware = try await ops.addFirmware(file: dir + "/fw.bin", product: "thermo", version: "2.0").firmware

        // Gateway-written events: devices going through a release, a few hundred events.
        var sim = SimulatorConfig(count: 10, product: "thermo", version: "1.0", trustedKeys: try ops.trustedKeys())
        sim.useBroker(configuration.brokerOptions(clientID: "-"))
        sim.chunkSize = 512
        sim.windowCount = 2
        sim.requestTimeout = .milliseconds(800)
        try await ops.provision(&sim)
        fleet = try FleetSimulator(config: sim, logger: Harness.logger)
        fleet?.start()
        try await eventually(timeout: .seconds(60), "the gateway to register the fleet") {
            try await ops.store.devices().filter(\.online).count == 10
        }
        let plan = try await ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
        try await eventually(timeout: .seconds(60), "downloads to start") {
            try await ops.store.jobs(release: plan.release.id).contains { $0.state == .downloading }
        }

        // 1. The gateway's connection is taken over by a client with its id (and, as a
        //    client id is now its username, with its password: a leaked one).
        let intruderLoop = MosquittoEventLoop(name: "intruder")
        var intruderOptions = configuration.brokerOptions(clientID: configuration.mqtt.clientID)
        (intruderOptions.username, intruderOptions.password) = (configuration.mqtt.username, try ops.serviceAccounts().gateway.password)
        intruderOptions.cleanSession = false
        let intruder = MosquittoClient(options: intruderOptions, loop: intruderLoop, logger: Harness.logger)
        try await intruder.connect()
        try await Self.cliRelease(ops, firmware, "a")
        await intruder.disconnect()
        intruderLoop.shutdown()

        // 2. The broker dies with SIGKILL while the CLI writes; the gateway restarts it.
        let firstBroker = try #require(Self.brokerPID(dir))
        kill(firstBroker, SIGKILL)
        try await Self.cliRelease(ops, firmware, "b")
        try await eventually(timeout: .seconds(30), "the gateway to restart its broker") {
            if let pid = Self.brokerPID(dir), pid != firstBroker { return PortProbe.accepts(host: "127.0.0.1", port: port) }
            return false
        }

        // 3. The gateway dies with SIGKILL while it catches up and devices report, right
        //    after events were committed, and the CLI writes while it is down.
        try await Self.cliRelease(ops, firmware, "c")
        let beforeKill = try await ops.store.lastEventSequence()
        kill(gateways[0].pid, SIGKILL)
        #expect(await gateways[0].waitForExit(timeout: .seconds(10)))
        try await Self.cliRelease(ops, firmware, "d")
        _ = try await ops.addFirmware(file: dir + "/fw.bin", product: "other", version: "1.0")
        let received = backend.distinct
        print("feed test: \(beforeKill) events before the gateway kill, \(received.count) received, missing \((1...beforeKill).filter { !received.contains($0) }.count)")
        gateways.append(try restart.serve(binary, dataDir: dir, port: port))

        try await eventually(timeout: .seconds(120), "every job to succeed") {
            try await ops.store.jobs(release: plan.release.id).allSatisfy { $0.state == .succeeded }
        }
        await fleet?.stop()
        // 4. A polite stop publishes what the last flush wrote.
        gateways[1].signal(SIGTERM)
        #expect(await gateways[1].waitForExit(timeout: .seconds(30)))
        let last = try await ops.store.lastEventSequence()
        gateways.append(try restart.serve(binary, dataDir: dir, port: port))
        do {
            try await eventually(timeout: .seconds(60), "the backend to receive all \(last) events") {
                backend.distinct.isSuperset(of: 1...last)
            }
        } catch {
            let received = backend.distinct
            let missing = (1...last).filter { !received.contains($0) }
            let stored = try await ops.store.events(after: 0, limit: 1_000_000)
            let kinds = missing.prefix(20).map { seq in "\(seq):\(stored.first { $0.sequence == seq }?.kind.rawValue ?? "?")" }
            let log = (try? String(contentsOfFile: dir + "/serve.log", encoding: .utf8)) ?? ""
            Issue.record("missing \(missing.count) of \(last): \(kinds); serve.log: \(log.suffix(3000))")
            throw error
        }
        gateways[2].signal(SIGTERM)
        #expect(await gateways[2].waitForExit(timeout: .seconds(30)))
        let final = try await ops.store.lastEventSequence()
        try await eventually(timeout: .seconds(10), "the events of the last run") { backend.distinct.isSuperset(of: 1...final) }
        await backend.stop()

        // At least once, in order: the first copy of each seq arrives in seq order, and
        // without duplicates the stream is exactly the store's log.
        let stored = try await ops.store.events(after: 0, limit: 1_000_000)
        var seen = Set<Int64>()
        let firstCopies = backend.events.filter { seen.insert($0.seq).inserted }
        #expect(firstCopies.map(\.seq) == stored.map(\.sequence))
        #expect(firstCopies.map(\.kind) == stored.map(\.kind.rawValue))
    }
}
