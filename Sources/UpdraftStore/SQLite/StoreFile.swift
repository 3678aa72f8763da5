import Foundation
import GRDB
import UpdraftCore

/// What may be done about the file before the store opens it. A status database is
/// never silently replaced: SQLite takes an empty file for an empty database and would
/// happily migrate a fresh schema into it (or into another program's database), so every
/// lost catalog would look like a first start.
enum StoreFile {
    /// Checks an existing file, or creates a fresh store when there is none and `create`.
    static func prepare(path: String, create: Bool, migrate: (DatabasePool) throws -> Void) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            guard errno == ENOENT else {
                throw UpdraftError("store_unreadable", "Cannot read the status database \(path) (\(String(cString: strerror(errno)))). Check the permissions of data_dir.")
            }
            guard create else {
                throw UpdraftError(
                    "store_missing",
                    "There is no status database at \(path). Check --data-dir or data_dir (a typo?); `updraft serve` or `updraft firmware add` creates one.")
            }
            try createFresh(path: path, migrate: migrate)
            return
        }
        guard info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else {
            throw UpdraftError("store_foreign", "\(path) is not a file. Point store.sqlite.path or data_dir at an Updraft status database.")
        }
        try checkExisting(path: path, size: Int64(info.st_size))
    }

    /// A new store is built beside the final name and linked into place: a half-made or
    /// 0-byte file is never visible under `path`, so an empty file there is always damage.
    /// Two processes creating at once: one link wins, the other opens the winner's file.
    private static func createFresh(path: String, migrate: (DatabasePool) throws -> Void) throws {
        let staging = path + ".new-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer {
            for suffix in ["", "-wal", "-shm"] { unlink(staging + suffix) }
        }
        do {
            let pool = try DatabasePool(path: staging)
            try migrate(pool)
            try pool.close()
        } catch {
            throw StoreErrors.map(error, path: path, busyTimeout: SQLiteStatusStore.busyTimeout)
        }
        if link(staging, path) != 0 && errno != EEXIST {
            throw UpdraftError("store_unwritable", "Cannot create the status database \(path) (\(String(cString: strerror(errno)))). Check that data_dir is writable.")
        }
    }

    /// An empty file, another program's file or database: refused, naming the file.
    private static func checkExisting(path: String, size: Int64) throws {
        let restore = "Restore it from a backup, or move it away to start with an empty store (every firmware, release and job recorded in it is then lost)."
        guard size > 0 else {
            throw UpdraftError("store_empty", "The status database \(path) is empty (0 bytes), so it holds no Updraft data. \(restore)")
        }
        // The file is read through SQLite only, never opened and closed beside it: SQLite's
        // locks are POSIX advisory locks, which belong to the process, and closing any
        // descriptor of the file drops them all. With a store already open in this process
        // (the gateway and Operations in one process), another process's last connection
        // would then believe it is alone, checkpoint and delete the WAL under our writes.
        // SQLite shares one descriptor per file among its own connections and keeps it
        // open while any of them holds a lock.
        var configuration = Configuration()
        configuration.readonly = true
        let tables: [String]
        let migrations: [String]
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            (tables, migrations) = try queue.read { db in
                let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                let migrations = tables.contains("grdb_migrations")
                    ? try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") : []
                return (tables, migrations)
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB {
            throw UpdraftError("store_corrupt", "\(path) is not an SQLite database, so not an Updraft status database. Check data_dir and store.sqlite.path. \(restore)")
        } catch {
            throw StoreErrors.map(error, path: path, busyTimeout: SQLiteStatusStore.busyTimeout)
        }
        // No table yet: a store another process is creating right now (never linked into
        // place half-made, see createFresh) or an empty SQLite file: migrating is safe.
        if tables.isEmpty { return }
        let ours = Set(Schema.migrator.migrations)
        guard tables.contains("grdb_migrations"), migrations.contains(where: ours.contains) else {
            throw UpdraftError(
                "store_foreign",
                "\(path) is an SQLite database of another program (tables: \(tables.prefix(5).joined(separator: ", "))), not an Updraft status database. Check data_dir and store.sqlite.path.")
        }
    }
}
