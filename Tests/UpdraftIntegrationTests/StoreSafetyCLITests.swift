import Foundation
import GRDB
import LoopbackPorts
import Testing
import UpdraftApp
import UpdraftCore

/// The store is never silently replaced or mistaken (issue 8, item 12), through the real
/// binary: an empty or damaged updraft.sqlite is an error naming the file for every
/// command, serve included; read-only commands never create a store.
// Serialized: each test starts several updraft processes; run side by side they
// starve the rest of the suite on a 2-core machine.
@Suite(.serialized, .timeLimit(.minutes(3))) struct StoreSafetyCLITests {
    let serveEnvironment = ["UPDRAFT_COAP_ENABLED": "false"]

    @Test func anEmptyStoreFileIsAnErrorForEveryCommand() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = cli.logs + "/data"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = dir + "/updraft.sqlite"
        FileManager.default.createFile(atPath: store, contents: Data())
        defer { killAll([], brokerOf: dir) }
        let port = PortProbe.freePort()
        for arguments in [["release", "list"], ["events"], ["firmware", "list"], ["serve"]] {
            let run = try await cli.run(
                arguments + ["--data-dir", dir], environment: serveEnvironment.merging(servedBroker(port: port)) { $1 },
                timeout: .seconds(20))
            let command = arguments.joined(separator: " ")
            #expect(run.status == 1, "\(command) took an empty file for a store: \(run.output)")
            #expect(run.errors.first?.contains(store) == true, "\(command): \(run.output)")
            let size = (try FileManager.default.attributesOfItem(atPath: store)[.size] as? NSNumber)?.intValue
            #expect(size == 0, "\(command) replaced the file")
        }
    }

    @Test func readOnlyCommandsNeverCreateAStore() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let typo = cli.logs + "/dta"
        for arguments in [["release", "list"], ["events"], ["device", "list"], ["stats", "versions"]] {
            let run = try await cli.run(arguments + ["--data-dir", typo])
            #expect(run.status == 1, "\(arguments.joined(separator: " ")): \(run.output)")
            #expect(run.errors.first?.contains(typo) == true, "\(run.output)")
            #expect(!FileManager.default.fileExists(atPath: typo), "\(arguments.joined(separator: " ")) created \(typo)")
        }
        // A folder that exists but holds no store: still no store created.
        try FileManager.default.createDirectory(atPath: typo, withIntermediateDirectories: true)
        let run = try await cli.run(["release", "list", "--data-dir", typo])
        #expect(run.status == 1)
        #expect(run.errors.first?.contains(typo + "/updraft.sqlite") == true, "\(run.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: typo).isEmpty)
    }

    @Test func serveRefusesADamagedStore() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = try await cli.dataDirectory()
        FileManager.default.createFile(atPath: cli.logs + "/fw.bin", contents: Data(repeating: 7, count: 300_000))
        let added = try await cli.run(["firmware", "add", cli.logs + "/fw.bin", "--product", "thermo", "--version", "2.0", "--data-dir", dir])
        try #require(added.status == 0, "\(added.output)")
        // Damage the root page of an index nothing reads at start (after moving the WAL
        // into the file): only a check of every page finds it before a query trips on it.
        let store = dir + "/updraft.sqlite"
        let queue = try DatabaseQueue(path: store)
        try await queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        let page = try await queue.read { db in try Int.fetchOne(db, sql: "SELECT rootpage FROM sqlite_master WHERE name = 'releases_created_at'") ?? 0 }
        try queue.close()
        try #require(page > 1)
        let handle = try #require(FileHandle(forWritingAtPath: store))
        try handle.seek(toOffset: UInt64((page - 1) * 4096))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 4096))
        try handle.close()
        defer { killAll([], brokerOf: dir) }

        let run = try await cli.run(
            ["serve", "--data-dir", dir], environment: serveEnvironment.merging(servedBroker(port: PortProbe.freePort())) { $1 },
            timeout: .seconds(20))
        #expect(run.status == 1, "serve accepted a damaged store: \(run.output)")
        #expect(run.errors.first?.contains(store) == true, "\(run.output)")
        // The quick check either lists the damage or trips on it (SQLITE_CORRUPT).
        #expect(run.errors.first.map { $0.contains("quick_check") || $0.contains("malformed") } == true, "\(run.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/broker/mosquitto.pid"))
    }
}
