import Foundation
import UpdraftCore

#if canImport(Glibc)
import Glibc
#endif

/// Files only this user may read (passwords, pre-shared keys), replaced whole and one
/// writer at a time: the CLI and a gateway may write at once, and a reader (mosquitto at
/// a reload, the gateway's PSK lookup) sees the old file or the new one, never half of one.
public enum PrivateFile {
    /// Writes `text` to a 0600 temporary file and renames it over `path`.
    public static func replace(_ path: String, with text: String, failure: @autoclosure () -> UpdraftError) throws {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]),
            chmod(temporary, 0o600) == 0, rename(temporary, path) == 0
        else { throw failure() }
    }

    /// Runs `body` holding an exclusive flock on `lockPath` (made 0600 if missing).
    public static func withLock<T>(_ lockPath: String, failure: @autoclosure () -> UpdraftError, _ body: () throws -> T) throws -> T {
        let fd = open(lockPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure() }
        defer { close(fd) }
        flock(fd, LOCK_EX)
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}
