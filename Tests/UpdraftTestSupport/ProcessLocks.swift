import Foundation

/// The POSIX (fcntl) locks that process `pid` holds on the file at `path`, as lines of
/// /proc/locks (Linux). SQLite's unix VFS locks through these, so they show whether a
/// process still counts as a connection to a database for the other processes.
package func posixLocks(of pid: pid_t = getpid(), on path: String) -> [String] {
    var info = stat()
    guard stat(path, &info) == 0, let text = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return [] }
    return text.split(separator: "\n").filter { line in
        // "1: POSIX  ADVISORY  READ 1234 08:01:5678 1073741826 1073742335"; "1: -> POSIX ..." is a waiter.
        let fields = line.split(separator: " ")
        guard fields.count >= 6, fields[1] == "POSIX", fields[4] == "\(pid)" else { return false }
        return fields[5].split(separator: ":").last == "\(info.st_ino)"
    }.map(String.init)
}
