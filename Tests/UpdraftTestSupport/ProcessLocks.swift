import Foundation
import LoopbackPorts

/// The POSIX (fcntl) locks that process `pid` holds on the file at `path`, as lines of
/// /proc/locks (Linux). SQLite's unix VFS locks through these, so they show whether a
/// process still counts as a connection to a database for the other processes.
package func posixLocks(of pid: pid_t = getpid(), on path: String) -> [String] {
    var info = stat()
    guard stat(path, &info) == 0 else { return [] }
    return procFileText("/proc/locks").split(separator: "\n").filter { line in
        // "1: POSIX  ADVISORY  READ 1234 08:01:5678 1073741826 1073742335"; "1: -> POSIX ..." is a waiter.
        let fields = line.split(separator: " ")
        guard fields.count >= 6, fields[1] == "POSIX", fields[4] == "\(pid)" else { return false }
        return fields[5].split(separator: ":").last == "\(info.st_ino)"
    }.map(String.init)
}

/// The descriptors of this process open on `path` or its -wal/-shm (/proc/self/fd), for messages.
package func openDescriptors(on path: String) -> [String] {
    let dir = "/proc/self/fd"
    return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).compactMap { fd in
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + fd), target.hasPrefix(path) else { return nil }
        return "\(fd) -> \(target)"
    }
}
