import Foundation

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`: lets a bench say
/// where the cycles of a phase went (the broker, or this process).
public enum CPUTime {
    /// Seconds of CPU used so far by `pid` (this process when `nil`); `nil` when unreadable.
    public static func seconds(pid: Int32? = nil) -> Double? {
        let path = "/proc/\(pid.map(String.init) ?? "self")/stat"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// CPU seconds `pid` and this process used while `body` ran.
    public static func measure<T>(
        broker pid: Int32?, _ body: () async throws -> T
    ) async rethrows -> (value: T, broker: Double?, process: Double?) {
        let broker0 = pid.flatMap { seconds(pid: $0) }
        let self0 = seconds()
        let value = try await body()
        let broker1 = pid.flatMap { seconds(pid: $0) }
        let self1 = seconds()
        return (value, broker0.flatMap { a in broker1.map { $0 - a } }, self0.flatMap { a in self1.map { $0 - a } })
    }
}
