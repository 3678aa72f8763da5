import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

/// SQLite's locks on a database file are POSIX advisory locks, which belong to the
/// process: closing any descriptor of the file drops all of them (fcntl(2)). A process
/// that lost them no longer counts as a connection for the others, so another process's
/// last connection (an `updraft` CLI command) checkpoints and deletes the WAL and -shm
/// under it: its later commits go to deleted files and are lost, and the next readers
/// see "database disk image is malformed".
@Suite("SQLiteStatusStore file locks")
struct StoreLockTests {
    @Test("opening a second store on a file this process has open keeps the process's locks")
    func secondStoreKeepsTheFirstsLocks() async throws {
        try await withTemporaryPath { directory async throws in
            let path = directory + "/updraft.sqlite"
            let first = try SQLiteStatusStore(path: path, logger: testLogger)
            _ = try await first.appliedMigrations()
            try #require(!posixLocks(on: path).isEmpty, "an open store in WAL mode holds a shared lock on its file: \(openDescriptors(on: path))")
            // As the gateway and Operations do in one process (LocalStack: `updraft demo`,
            // `updraft bench`, the integration tests' Harness).
            let second = try SQLiteStatusStore(path: path, logger: testLogger)
            #expect(!posixLocks(on: path).isEmpty, "opening a second store dropped the first one's locks: \(openDescriptors(on: path))")
            _ = try await second.appliedMigrations()
            try await first.executeForTesting("CREATE TABLE probe (x INTEGER)")
            #expect(!posixLocks(on: path).isEmpty)
            try second.close()
            #expect(!posixLocks(on: path).isEmpty, "closing the second store dropped the first one's locks")
            try first.close()
        }
    }
}
