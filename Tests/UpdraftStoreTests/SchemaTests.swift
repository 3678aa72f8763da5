import Foundation
import GRDB
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

/// Migrations are history: a file made by an older updraft upgrades in place.
@Suite("Schema")
struct SchemaTests {
    @Test("migration identifiers are unique and in shipping order")
    func identifiers() {
        let identifiers = Schema.migrations.map(\.identifier)
        #expect(Set(identifiers).count == identifiers.count)
        #expect(Schema.migrator.migrations == identifiers)
        #expect(identifiers.last == "v10-webhooks")
    }

    /// A store file made by the migrations up to `last` of an older build, with `sql` run in it.
    static func oldStore(_ path: String, upTo last: String, _ sql: String) async throws {
        let old = try DatabaseQueue(path: path)
        try Schema.migrator.migrate(old, upTo: last)
        try await old.write { db in try db.execute(sql: sql) }
        try old.close()
    }

    @Test("a store made by the v6 migrations upgrades: transports are kept and the column takes new values")
    func upgradeFromV6() async throws {
        try await withTemporaryPath { directory in
            let path = directory + "/status.sqlite"
            let old = try DatabaseQueue(path: path)
            try Schema.migrator.migrate(old, upTo: "v6-event-cursors")
            try await old.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO devices (id, product, version, transport) VALUES
                            ('d-mqtt', 'p', '1', 'mqtt'), ('d-coap', 'p', '1', 'coap'), ('d-old', 'p', '1', NULL)
                        """)
            }
            // v2's CHECK list held until now.
            #expect(throws: DatabaseError.self) {
                try old.write { db in try db.execute(sql: "UPDATE devices SET transport = 'http' WHERE id = 'd-old'") }
            }
            try old.close()

            let store = try SQLiteStatusStore(path: path, logger: testLogger)
            #expect(try await store.appliedMigrations() == SQLiteStatusStore.migrationIdentifiers)
            #expect(try await store.device("d-mqtt")?.transport == .mqtt)
            #expect(try await store.device("d-coap")?.transport == .coap)
            #expect(try await store.device("d-old")?.transport == nil)
            #expect(try await store.device("d-old")?.product == "p")
            // A transport this build does not know needs no table rebuild any more.
            try await store.executeForTesting("UPDATE devices SET transport = 'http' WHERE id = 'd-old'")
            #expect(try await store.pragma("foreign_key_check") == nil)
            try store.close()
        }
    }

    /// A store of an older build (migrations up to `last`, then `sql`) opened by this one:
    /// every migration applied; `body` checks what it kept.
    static func upgraded(from last: String, _ sql: String, _ body: (SQLiteStatusStore) async throws -> Void) async throws {
        try await withTemporaryPath { directory in
            let path = directory + "/status.sqlite"
            try await oldStore(path, upTo: last, sql)
            let store = try SQLiteStatusStore(path: path, logger: testLogger)
            #expect(try await store.appliedMigrations() == SQLiteStatusStore.migrationIdentifiers)
            try await body(store)
            try store.close()
        }
    }

    @Test("a store made by the v7 migrations upgrades: its events have no actor, new ones keep theirs")
    func upgradeFromV7() async throws {
        try await Self.upgraded(
            from: "v7-device-transport-unchecked", "INSERT INTO events (seq, time, kind, device, detail) VALUES (1, 0, 'fleet.command', 'd1', 'unlock')"
        ) { store in
            try await store.commit(StoreBatch(events: [UpdraftEvent(kind: .fleetCommand, time: Date(), deviceID: "d1", actor: "cli:alice")]))
            let events = try await store.events(after: 0, limit: 10)
            #expect(events.map(\.actor) == [nil, "cli:alice"])
            #expect(events.first?.detail == "unlock")
        }
    }

    @Test("a store made by the v9 migrations upgrades: its log stays, webhooks start after it")
    func upgradeFromV9() async throws {
        try await Self.upgraded(
            from: "v9-event-actor",
            "INSERT INTO events (seq, time, kind, device, actor) VALUES (1, 0, 'device.online', 'd1', NULL), (2, 0, 'device.offline', 'd1', NULL)"
        ) { store in
            let hook = try await store.addWebhook(
                url: "https://example.com/h", secret: String(repeating: "x", count: 16), kinds: [], after: nil, at: Date(timeIntervalSince1970: 1_700_000_000))
            #expect(hook.cursor == 2)
            #expect(try await store.webhooks() == [hook])
        }
    }
}
