import Foundation
import GRDB
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

/// A status database is never silently replaced or mistaken (issue 8, item 12): what is
/// at the path is either an Updraft store or an error naming the file; nothing is created
/// unless asked.
@Suite("SQLiteStatusStore opening")
struct StoreFileTests {
    func size(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
    }

    /// Overwrites the root page of `table` with garbage, after moving the WAL into the file.
    func damageTable(_ table: String, in path: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        let (page, pageSize) = try queue.read { db in
            (try Int.fetchOne(db, sql: "SELECT rootpage FROM sqlite_master WHERE name = ?", arguments: [table]) ?? 0,
             try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 4096)
        }
        try queue.close()
        #expect(page > 1)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seek(toOffset: UInt64((page - 1) * pageSize))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: pageSize))
        try handle.close()
    }

    @Test("an empty (0-byte) file is refused, not replaced by a fresh store")
    func emptyFile() async throws {
        try await withTemporaryPath { directory async throws in
            let path = directory + "/updraft.sqlite"
            _ = FileManager.default.createFile(atPath: path, contents: Data())
            for create in [true, false] {
                let error = #expect(throws: UpdraftError.self) { try SQLiteStatusStore(path: path, create: create, logger: testLogger) }
                #expect(error?.code == "store_empty")
                #expect(error?.message.contains(path) == true)
            }
            #expect(size(path) == 0, "the file was written")
        }
    }

    @Test("a missing file is an error when the caller may not create one, and nothing is created")
    func missingFile() async throws {
        try await withTemporaryPath { directory async throws in
            let path = directory + "/updraft.sqlite"
            let error = #expect(throws: UpdraftError.self) { try SQLiteStatusStore(path: path, create: false, logger: testLogger) }
            #expect(error?.code == "store_missing")
            #expect(error?.message.contains(path) == true)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
        }
    }

    @Test("a file that is not SQLite, or another program's database, is refused and left as it was")
    func foreignFiles() async throws {
        try await withTemporaryPath { directory async throws in
            let text = directory + "/notes.sqlite"
            try "not a database\n".write(toFile: text, atomically: true, encoding: .utf8)
            let notSQLite = #expect(throws: UpdraftError.self) { try SQLiteStatusStore(path: text, logger: testLogger) }
            #expect(notSQLite?.code == "store_corrupt")
            #expect(notSQLite?.message.contains(text) == true)
            #expect(notSQLite?.message.contains("is not an SQLite database") == true)
            #expect(try String(contentsOfFile: text, encoding: .utf8) == "not a database\n")

            let other = directory + "/other.sqlite"
            let queue = try DatabaseQueue(path: other)
            try await queue.write { db in try db.execute(sql: "CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('ada')") }
            try queue.close()
            let foreign = #expect(throws: UpdraftError.self) { try SQLiteStatusStore(path: other, logger: testLogger) }
            #expect(foreign?.code == "store_foreign")
            #expect(foreign?.message.contains(other) == true)
            let check = try DatabaseQueue(path: other)
            let tables = try await check.read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") }
            #expect(tables == ["contacts"], "our schema was migrated into another program's database")
            try check.close()
        }
    }

    @Test("a store with a damaged page fails the quick check, naming the file")
    func corruptPage() async throws {
        try await withTemporaryPath { directory async throws in
            let path = directory + "/updraft.sqlite"
            let store = try SQLiteStatusStore(path: path, logger: testLogger)
            try await store.executeForTesting(
                "CREATE TABLE ballast (x BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) INSERT INTO ballast SELECT randomblob(200) FROM n")
            try store.quickCheck()
            try store.close()
            try damageTable("ballast", in: path)

            let reopened = try SQLiteStatusStore(path: path, logger: testLogger)
            let error = #expect(throws: UpdraftError.self) { try reopened.quickCheck() }
            #expect(error?.code == "store_corrupt")
            #expect(error?.message.contains(path) == true)
        }
    }

    @Test("a fresh store appears under its name whole: never as an empty file")
    func freshStoreIsLinkedWhole() async throws {
        try await withTemporaryPath { directory async throws in
            let path = directory + "/updraft.sqlite"
            let store = try SQLiteStatusStore(path: path, logger: testLogger)
            #expect(try await store.appliedMigrations() == SQLiteStatusStore.migrationIdentifiers)
            #expect((size(path) ?? 0) > 0)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).allSatisfy { !$0.contains(".new-") })
        }
    }
}
