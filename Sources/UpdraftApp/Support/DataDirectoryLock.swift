import Foundation
import UpdraftCore

/// One gateway per data directory: an exclusive `flock` on `<data_dir>/updraft.lock`,
/// held as long as this object lives. The kernel drops the lock when the process ends,
/// however it ends, so a lock that can be taken means the previous gateway is gone
/// (and a broker it left behind may be taken over).
public final class DataDirectoryLock: Sendable {
    public static let fileName = "updraft.lock"
    public let path: String
    private let descriptor: Int32

    /// Takes the lock or throws `data_dir_in_use` naming the holder's pid.
    public init(directory: String) throws(UpdraftError) {
        path = URL(fileURLWithPath: directory).appendingPathComponent(Self.fileName).path
        // O_CLOEXEC: a child (the broker) must not inherit the lock and keep it after we die.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw UpdraftError(
                "data_dir_unwritable",
                "Cannot create \(path) (\(String(cString: strerror(errno)))). Check that data_dir is a folder this user can write.")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            guard reason == EWOULDBLOCK else {
                throw UpdraftError("data_dir_lock_failed", "Cannot lock \(path) (\(String(cString: strerror(reason)))).")
            }
            let who = holder.flatMap { $0.isEmpty ? nil : "pid \($0)" } ?? "another process"
            throw UpdraftError(
                "data_dir_in_use",
                "Another updraft gateway (\(who)) is running on data directory \(directory). Stop it first, or give this one its own --data-dir.")
        }
        descriptor = fd
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    deinit {
        _ = ftruncate(descriptor, 0)
        close(descriptor)
    }
}
