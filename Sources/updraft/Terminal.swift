import Foundation
import UpdraftCore

/// One-line progress bars on stderr: redrawn in place on a terminal, printed every few
/// seconds otherwise (CI logs).
final class ProgressLine: @unchecked Sendable {
    private let isTTY = isatty(STDERR_FILENO) == 1
    private var lastPlain = Date.distantPast
    private let lock = NSLock()

    func update(_ fraction: Double, _ text: String) {
        lock.lock()
        defer { lock.unlock() }
        let width = 30
        let filled = Int((min(max(fraction, 0), 1) * Double(width)).rounded())
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let line = "\(bar) \(String(format: "%5.1f", fraction * 100))%  \(text)"
        if isTTY {
            FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
        } else if Date().timeIntervalSince(lastPlain) >= 2 {
            lastPlain = Date()
            FileHandle.standardError.write(Data("\(line)\n".utf8))
        }
    }

    func finish() {
        if isTTY { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

func describe(_ jobs: [JobState: Int]) -> String {
    JobState.allCases.compactMap { state in jobs[state].map { "\(state.rawValue) \($0)" } }.joined(separator: ", ")
}

/// Several progress bars redrawn in place on a terminal (stdout), or printed as a block
/// when the output is not a terminal.
final class ProgressBoard {
    private let isTTY = isatty(STDOUT_FILENO) == 1
    private var drawn = 0

    static func bar(_ fraction: Double, _ text: String) -> String {
        let width = 30
        let filled = Int((min(max(fraction, 0), 1) * Double(width)).rounded())
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        return "\(bar) \(String(format: "%5.1f", fraction * 100))%  \(text)"
    }

    func draw(_ lines: [String]) {
        var out = ""
        if isTTY && drawn > 0 { out += "\u{1B}[\(drawn)A" }
        for line in lines { out += (isTTY ? "\u{1B}[2K" : "") + line + "\n" }
        if !isTTY { out += "\n" }
        drawn = lines.count
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}
