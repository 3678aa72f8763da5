import Foundation
import UpdraftApp
import UpdraftCore

/// How `release show` and `release watch` print a ``ReleaseReport``.
extension ReleaseReport {
    func printText() {
        print("release:  \(release) (\(kind): \(target))")
        print("firmware: \(firmware)\(forced ? " (forced)" : "")")
        print("phase:    \(phaseDetail)\(started ? "" : " (not started yet)")")
        if kind != "one-off" { print("stage:    \(stagePercent)%") }
        print("devices:  \(total)")
        for (name, count) in counts.sorted(by: { $0.key < $1.key }) where count > 0 { print("  \(name): \(count)") }
        for (reason, count) in failedByReason.sorted(by: { $0.key < $1.key }) { print("  failed (\(reason)): \(count)") }
        guard !devices.isEmpty else { return }
        print("DEVICE\tSTATE\tJOB\t\(kind == "one-off" ? "PROGRESS" : "ATTEMPTS")")
        for row in devices {
            var line = "\(row.device)\t\(row.stateDetail)\t\(row.job ?? "-")\t"
            line += kind == "one-off" ? "\(row.progress ?? 0)%" : "\(row.attempts ?? 0)"
            if let failure = row.failure { line += "\t\(failure): \(row.detail ?? "")" }
            print(line)
        }
    }

    /// The board `release watch` draws.
    func boardLines() -> [String] {
        var lines = ["release \(release) · \(firmware) · \(kind) · \(phaseDetail)\(kind == "one-off" ? "" : " · stage \(stagePercent)%")"]
        let total = max(self.total, 1)
        // Succeeded, failed (and a fleet release's updating) always; the other states while they count.
        let always = kind == "one-off" ? ["succeeded", "failed"] : ["succeeded", "updating", "failed"]
        let rest = counts.keys.filter { !always.contains($0) && counts[$0, default: 0] > 0 }.sorted()
        for name in always + rest {
            let count = counts[name, default: 0]
            var label = "\(name) \(count)"
            if name == "updating", let updatingPercent { label += " (mean \(updatingPercent)%)" }
            lines.append(ProgressBoard.bar(Double(count) / Double(total), label))
        }
        return lines
    }
}

/// JSON for `--json`: sorted keys, ISO 8601 times, one document per line.
func jsonText<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
