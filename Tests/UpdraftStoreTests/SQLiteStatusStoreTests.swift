import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

struct SQLiteFixture: StoreFixture {
    let path: String
    let sqlite: SQLiteStatusStore
    var store: any StatusStore { sqlite }

    func openAnother() async throws -> any StatusStore {
        try SQLiteStatusStore(path: path, logger: testLogger)
    }

    /// A store on a new file in a temporary directory, removed afterwards.
    static func with(_ body: (SQLiteFixture) async throws -> Void) async throws {
        try await withTemporaryPath { directory in
            let path = directory + "/status.sqlite"
            try await body(SQLiteFixture(path: path, sqlite: try SQLiteStatusStore(path: path, logger: testLogger)))
        }
    }
}

@Suite("SQLiteStatusStore")
struct SQLiteStatusStoreTests {
    @Test("migrations run on a fresh file, with WAL and the connection pragmas")
    func freshFile() async throws {
        try await SQLiteFixture.with { fixture async throws in
            let store = fixture.sqlite
            #expect(SQLiteStatusStore.migrationIdentifiers == ["v1-catalog", "v1-registry", "v1-jobs", "v1-events", "v2-device-transport", "v3-fleet", "v4-fleet-activity", "v5-device-boot", "v6-event-cursors", "v7-device-transport-unchecked", "v8-api-tokens", "v9-event-actor", "v10-webhooks"])
            #expect(try await store.appliedMigrations() == SQLiteStatusStore.migrationIdentifiers)
            #expect(try await store.pragma("journal_mode") == "wal")
            #expect(try await store.pragma("synchronous") == "1")  // NORMAL
            #expect(try await store.pragma("foreign_keys") == "1")
            #expect(try await store.pragma("busy_timeout") == "5000")
        }
    }

    @Test("migrations are idempotent on reopen")
    func reopenIdempotent() async throws {
        try await SQLiteFixture.with { fixture in
            try await addFirmware(fixture.store, "p", "1")
            try fixture.sqlite.close()
            for _ in 0..<2 {
                let reopened = try SQLiteStatusStore(path: fixture.path, logger: testLogger)
                #expect(try await reopened.appliedMigrations() == SQLiteStatusStore.migrationIdentifiers)
                #expect(try await reopened.firmwareList(product: nil).count == 1)
                try reopened.close()
            }
        }
    }

    @Test("data survives close and reopen")
    func durability() async throws {
        try await SQLiteFixture.with { fixture in
            let store = fixture.sqlite
            let firmware = try await addFirmware(store, "p", "2").firmware
            let device = Device(id: "d1", product: "p", version: "1", online: true, firstSeen: t0, lastSeen: t0 + 1)
            try await store.commit(StoreBatch(devices: [device]))
            let plan = try await store.createRelease(
                Release(firmwareID: firmware.id, target: .devices(["d1", "ghost"]), createdAt: t0 + 2),
                firmware: firmware)
            var job = plan.jobs[0]
            job.state = .downloading
            job.progress = 10
            try await store.commit(
                StoreBatch(jobs: [job], events: [UpdraftEvent.job(.jobTransition, job, from: .queued, time: t0 + 3)]))
            let snapshot = try await Snapshot(store)
            try store.close()

            let reopened = try SQLiteStatusStore(path: fixture.path, logger: testLogger)
            #expect(try await Snapshot(reopened) == snapshot)
            #expect(snapshot.events.count == 5)
            #expect(try await reopened.job(job.id) == job)
            #expect(try await reopened.createRelease(
                Release(firmwareID: firmware.id, target: .devices(["d1"]), createdAt: t0 + 4), firmware: firmware
            ).skipped.map(\.1) == [.hasActiveJob(job.id)])
        }
    }

    @Test("stores opening a fresh file at once all migrate it")
    func concurrentOpen() async throws {
        try await withTemporaryPath { directory in
            let path = directory + "/status.sqlite"
            let migrations = try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let store = try SQLiteStatusStore(path: path, logger: testLogger)
                        return try await store.appliedMigrations()
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(migrations == Array(repeating: SQLiteStatusStore.migrationIdentifiers, count: 4))
        }
    }

    @Test("a database migrated by a newer updraft is refused")
    func newerSchema() async throws {
        try await SQLiteFixture.with { fixture in
            try await fixture.sqlite.executeForTesting("INSERT INTO grdb_migrations (identifier) VALUES ('v9-future')")
            try fixture.sqlite.close()
            let error = #expect(throws: UpdraftError.self) {
                try SQLiteStatusStore(path: fixture.path, logger: testLogger)
            }
            #expect(error?.code == "store_schema_newer")
            #expect(error?.message.contains("v9-future") == true)
        }
    }

    @Test("an unwritable location fails with store_unwritable")
    func unwritable() async throws {
        try await withTemporaryPath { directory in
            let error = #expect(throws: UpdraftError.self) {
                try SQLiteStatusStore(path: directory + "/missing/status.sqlite", logger: testLogger)
            }
            #expect(error?.code == "store_unwritable")
            #expect(error?.message.contains("data_dir") == true)
        }
    }

    @Test("a file that is not a database fails with store_corrupt")
    func notADatabase() async throws {
        try await withTemporaryPath { directory in
            let path = directory + "/status.sqlite"
            try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: UpdraftError.self) {
                try SQLiteStatusStore(path: path, logger: testLogger)
            }
            #expect(error?.code == "store_corrupt")
        }
    }
}

/// Everything a store returns, for before/after comparisons.
struct Snapshot: Equatable {
    var firmware: [Firmware]
    var devices: [Device]
    var releases: [Release]
    var jobs: [[Job]]
    var activeJobs: [Job]
    var events: [UpdraftEvent]
    var lastSequence: Int64

    init(_ store: any StatusStore) async throws {
        firmware = try await store.firmwareList(product: nil)
        devices = try await store.devices()
        releases = try await store.releases()
        var jobs: [[Job]] = []
        for release in releases { jobs.append(try await store.jobs(release: release.id)) }
        self.jobs = jobs
        activeJobs = try await store.activeJobs()
        events = try await store.events(after: 0, limit: 10_000)
        lastSequence = try await store.lastEventSequence()
    }
}
