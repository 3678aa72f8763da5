import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The whole text of a Linux /proc file such as /proc/locks or /proc/net/udp. They report a
/// size of 0, and Foundation's `String(contentsOfFile:)` stops after one read of a page
/// (4,079 of 17,003 bytes of /proc/locks, seen while many tests held locks): read to the end.
public func procFileText(_ path: String) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        bytes += buffer[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}
