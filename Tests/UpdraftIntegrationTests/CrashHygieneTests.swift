import Foundation
import LoopbackPorts
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport

/// Crash hygiene and one gateway per data directory (issue 8, items 8, 10, 11), with the
/// real binary and its real mosquitto: whatever ends a process, no broker or temporary
/// folder outlives it, and a second gateway never disturbs the first.
// Serialized: each test starts several updraft processes; run side by side they
// starve the rest of the suite on a 2-core machine.
@Suite(.serialized, .timeLimit(.minutes(3))) struct CrashHygieneTests {
    /// `updraft serve` on `dir` with its broker on `port`, CoAP off.
    func serve(_ cli: CLIProcess, _ dir: String, port: Int) throws -> (ChildProcess, String) {
        try cli.start(
            ["serve", "--data-dir", dir, "--log-level", "warning"],
            environment: servedBroker(port: port).merging(["UPDRAFT_COAP_ENABLED": "false"]) { $1 })
    }

    /// Waits until the gateway's broker runs and accepts connections; returns its pid.
    func brokerReady(_ dir: String, port: Int) async throws -> pid_t {
        var broker: pid_t = 0
        try await eventually(timeout: .seconds(30), "the managed broker to accept connections") {
            guard let pid = pid(inFile: dir + "/broker/mosquitto.pid"), processIsAlive(pid) else { return false }
            broker = pid
            return PortProbe.accepts(host: "127.0.0.1", port: port)
        }
        return broker
    }

    /// A gateway serving a fresh data directory, its broker ready; what a test starts
    /// with ``serveAgain()`` is killed with it.
    final class ServedGateway {
        let dir: String
        let port: Int
        let first: ChildProcess
        let firstLog: String
        var broker: pid_t = 0
        var others: [ChildProcess] = []
        private let serve: () throws -> (ChildProcess, String)

        init(dir: String, port: Int, serve: @escaping () throws -> (ChildProcess, String)) throws {
            (self.dir, self.port, self.serve) = (dir, port, serve)
            (first, firstLog) = try serve()
        }

        /// Another `updraft serve` on the same data directory and port.
        func serveAgain() throws -> (ChildProcess, String) {
            let (process, log) = try serve()
            others.append(process)
            return (process, log)
        }
    }

    func withServedGateway(_ body: (ServedGateway) async throws -> Void) async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = try await cli.dataDirectory()
        let port = PortProbe.freePort()
        let gateway = try ServedGateway(dir: dir, port: port) { try serve(cli, dir, port: port) }
        defer { killAll([gateway.first] + gateway.others, brokerOf: dir) }
        gateway.broker = try await brokerReady(dir, port: port)
        try await body(gateway)
    }

    @Test func aSecondServeOnTheSameDataDirectoryIsRefusedAndTheFirstKeepsWorking() async throws {
        try await withServedGateway { gateway in
            let (dir, port, first, firstLog, broker) = (gateway.dir, gateway.port, gateway.first, gateway.firstLog, gateway.broker)
            let (process, secondLog) = try gateway.serveAgain()
            #expect(await process.waitForExit(timeout: .seconds(20)), "the second serve kept running beside the first")
            #expect((process.terminationStatus >> 8) & 0xff == 1)
            let said = (try? String(contentsOfFile: secondLog, encoding: .utf8)) ?? ""
            #expect(said.contains("Another updraft gateway (pid \(first.pid))"), "\(said)")

            // The first and its broker are untouched: same broker, still serving.
            #expect(first.isRunning)
            #expect(processIsAlive(broker), "the second serve stopped the first's broker")
            #expect(pid(inFile: dir + "/broker/mosquitto.pid") == broker)
            #expect(PortProbe.accepts(host: "127.0.0.1", port: port))
            // ... and the first still works: a device announces, the gateway registers it.
            let ops = try Operations(configuration: { var c = UpdraftConfiguration(); c.dataDirectory = dir; return c }(), access: .existing, logger: Harness.logger)
            var sim = SimulatorConfig(count: 1, product: "thermo", version: "1.0", trustedKeys: try ops.trustedKeys())
            sim.useBroker(UpdraftConfiguration.served(dir, port: port).brokerOptions(clientID: "-"))
            try await ops.provision(&sim)
            let fleet = try FleetSimulator(config: sim, logger: Harness.logger)
            fleet.start()
            try await eventually(timeout: .seconds(30), "the first gateway to register a device") {
                try await ops.store.devices().contains { $0.online }
            }
            await fleet.stop()

            first.signal(SIGTERM)
            #expect(await first.waitForExit(timeout: .seconds(30)))
            #expect(first.terminationStatus == 0, "\((try? String(contentsOfFile: firstLog, encoding: .utf8)) ?? "")")
        }
    }

    @Test func aGatewayKilledWithSIGKILLLeavesNoBrokerAndTheNextStartServes() async throws {
        try await withServedGateway { gateway in
            let (dir, port, first, broker) = (gateway.dir, gateway.port, gateway.first, gateway.broker)
            kill(first.pid, SIGKILL)
            #expect(await first.waitForExit(timeout: .seconds(10)))
            // The parent-death signal stops the broker: no orphan holds the port.
            try await eventually(timeout: .seconds(10), "the orphaned broker to exit") { !processIsAlive(broker) }
            #expect(!PortProbe.accepts(host: "127.0.0.1", port: port))

            let (restarted, log) = try gateway.serveAgain()
            let next = try await brokerReady(dir, port: port)
            #expect(next != broker)
            restarted.signal(SIGTERM)
            #expect(await restarted.waitForExit(timeout: .seconds(30)))
            // A SIGTERM that lands before serve handles signals ends it by the signal; either
            // way its broker must go with it.
            let status = restarted.terminationStatus
            #expect(status == 0 || status & 0x7f == SIGTERM, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            try await eventually(timeout: .seconds(10), "the broker to stop with its gateway") { !processIsAlive(next) }
        }
    }

    /// A private temporary directory for a demo, so its folder is easy to look for.
    func demoTemporaryDirectory(_ cli: CLIProcess) throws -> String {
        let tmp = cli.logs + "/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        return tmp
    }

    @Test func aDemoOverTheOpenFileLimitIsRefusedWithTheNumbersAndLeavesNothing() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let tmp = try demoTemporaryDirectory(cli)
        let run = try await cli.run(
            ["-c", "ulimit -n 256; exec \"$0\" demo --devices 200 --offline 0 --timeout 30", cli.binary],
            environment: ["TMPDIR": tmp], executable: "/bin/sh", timeout: .seconds(60))
        #expect(run.status == 1, "\(run.output)")
        #expect(run.errors.count == 1, "\(run.output)")
        #expect(run.output.contains("needs about 1056 open files but the hard limit is 256"), "\(run.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty, "the demo left its folder")
    }

    // One demo at a time: three at once are a heavy load on a 2-core machine.
    @Test(.serialized, arguments: [SIGTERM, SIGINT, SIGKILL])
    func aDemoEndedBySignalLeavesNoFolderAndNoBroker(_ signal: Int32) async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let tmp = try demoTemporaryDirectory(cli)
        // A demo that runs long enough to be caught running: one CoAP device fetching a
        // 4 MB image in 16-byte blocks (it is stopped as soon as its broker is up).
        let (demo, log) = try cli.start(
            ["demo", "--devices", "1", "--offline", "0", "--protocol", "coap", "--block-size", "16", "--image-bytes", "4000000", "--timeout", "120"],
            environment: ["TMPDIR": tmp])
        defer { if demo.isRunning { kill(demo.pid, SIGKILL) } }
        var broker: pid_t = 0
        try await eventually(timeout: .seconds(120), "the demo's broker to start") {
            try #require(demo.isRunning, "the demo ended early: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            guard let folder = try FileManager.default.contentsOfDirectory(atPath: tmp).first,
                let pid = pid(inFile: tmp + "/" + folder + "/broker/mosquitto.pid")
            else { return false }
            broker = pid
            return processIsAlive(pid)
        }
        kill(demo.pid, signal)
        #expect(await demo.waitForExit(timeout: .seconds(30)), "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        try await eventually(timeout: .seconds(15), "the demo's broker to exit") { !processIsAlive(broker) }
        try await eventually(timeout: .seconds(15), "the demo's folder to be removed") {
            try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty
        }
    }
}
