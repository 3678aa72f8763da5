import GRDB
import UpdraftCore

/// Turns SQLite failures that an operator can act on into `UpdraftError`s that say what
/// to do. Everything that reaches a user leaves the store as an `UpdraftError`.
enum StoreErrors {
    static func map(_ error: any Error, path: String, busyTimeout: Double) -> any Error {
        if error is UpdraftError || error is CancellationError { return error }
        guard let error = error as? DatabaseError else { return error }
        let detail = error.message ?? "\(error.resultCode)"
        switch error.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return UpdraftError(
                "store_busy",
                "The status database \(path) stayed locked by another process for more than \(Int(busyTimeout)) s. Retry; if it persists, look for a stuck updraft process using the same data_dir."
            )
        case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_READONLY, .SQLITE_AUTH:
            return UpdraftError(
                "store_unwritable",
                "Cannot open the status database \(path) for writing (\(detail)). Check that data_dir exists and that its permissions let this user create and write files."
            )
        case .SQLITE_IOERR:
            return UpdraftError(
                "store_io",
                "I/O error on the status database \(path) (\(detail)). Check the disk and data_dir permissions."
            )
        case .SQLITE_FULL:
            return UpdraftError(
                "store_full", "The disk holding the status database \(path) is full. Free space, then retry.")
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return UpdraftError(
                "store_corrupt",
                "\(path) is not a valid Updraft status database (\(detail)). Check data_dir; restore it from a backup if it was damaged."
            )
        default:
            return UpdraftError("store_failed", "The status database \(path) failed: \(detail).")
        }
    }

    static func corrupt(_ what: String, _ value: String?) -> UpdraftError {
        UpdraftError(
            "store_corrupt",
            "The status database holds an invalid \(what) '\(value?.prefix(80) ?? "NULL")'. Was it edited by hand, or written by a newer updraft?"
        )
    }
}
