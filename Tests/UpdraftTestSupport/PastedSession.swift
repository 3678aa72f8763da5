import Foundation

/// A shell session pasted into a document (`$ command` lines, each followed by what it
/// printed), found after a `<!-- session: NAME -->` comment; several blocks with the same
/// name make one session, run in order. Tests run the commands in one bash and compare what
/// they print with what the document shows, so the document cannot promise what the
/// product does not do.
package struct PastedSession: Sendable {
    package struct Step: Sendable, Equatable {
        package var command: String
        package var expected: [String]
        /// The document's line number of the command (1-based), for failure messages.
        package var line: Int
    }

    package var steps: [Step]

    /// The steps of every block named `name` in `text`, in order.
    package init(named name: String, in text: String) {
        let lines = text.components(separatedBy: "\n")
        var steps: [Step] = []
        var index = 0
        while index < lines.count {
            defer { index += 1 }
            guard lines[index].trimmingCharacters(in: .whitespaces) == "<!-- session: \(name) -->" else { continue }
            // The fence follows the marker (blank lines allowed).
            var open = index + 1
            while open < lines.count, lines[open].trimmingCharacters(in: .whitespaces).isEmpty { open += 1 }
            guard open < lines.count, lines[open].hasPrefix("```") else { continue }
            var cursor = open + 1
            while cursor < lines.count, !lines[cursor].hasPrefix("```") {
                let line = lines[cursor]
                if line.hasPrefix("$ ") {
                    steps.append(Step(command: String(line.dropFirst(2)), expected: [], line: cursor + 1))
                } else if !steps.isEmpty {
                    steps[steps.count - 1].expected.append(line)
                }
                cursor += 1
            }
            index = cursor
        }
        self.steps = steps
    }

    /// A bash script that runs every step in one shell (variables carry over), each step's
    /// output (stdout and stderr) after a marker line with its index.
    package func script(preamble: String) -> String {
        var script = preamble + "\n"
        for (i, step) in steps.enumerated() {
            script += "printf '\\n\(Self.marker)%d\\n' \(i)\n{ \(step.command)\n} 2>&1\n"
        }
        return script
    }

    static let marker = "@@pasted-session-step "

    /// What each step printed, from the output of ``script(preamble:)``.
    package static func outputs(_ output: String, count: Int) -> [String] {
        var result = Array(repeating: "", count: count)
        var current: Int?
        var collected: [String] = []
        func flush() {
            if let current, current < count { result[current] = collected.joined(separator: "\n") }
            collected = []
        }
        for line in output.components(separatedBy: "\n") {
            if line.hasPrefix(marker), let i = Int(line.dropFirst(marker.count)) {
                flush()
                current = i
            } else if current != nil {
                collected.append(line)
            }
        }
        flush()
        return result
    }

    /// Why `actual` is not what the document shows for `step`, or nil when it is. Times,
    /// long hex strings (hashes, secrets) and release/job ids differ from run to run and
    /// are compared as placeholders; JSON (the document folds it onto one line) is compared
    /// as parsed values; other text line by line, trailing blank lines ignored.
    package static func mismatch(_ step: Step, actual: String) -> String? {
        let expected = step.expected.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        let got = actual.trimmingCharacters(in: .whitespacesAndNewlines)
        if let want = canonicalJSON(expected) {
            guard let have = canonicalJSON(got) else { return "line \(step.line): `\(step.command)` printed no JSON:\n\(got)" }
            return want == have ? nil : "line \(step.line): `\(step.command)`\n  document: \(want)\n  printed:  \(have)"
        }
        let want = placeholders(expected), have = placeholders(got)
        return want == have ? nil : "line \(step.line): `\(step.command)`\n  document:\n\(want)\n  printed:\n\(have)"
    }

    /// JSON text re-serialized with sorted keys and placeholders, or nil when it is not JSON.
    static func canonicalJSON(_ text: String) -> String? {
        guard text.hasPrefix("{") || text.hasPrefix("["),
            let value = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]),
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return nil }
        return placeholders(String(decoding: data, as: UTF8.self))
    }

    static let volatile: [(pattern: String, placeholder: String)] = [
        (#"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})"#, "<time>"),
        (#"\b[0-9a-f]{32,}\b"#, "<hex>"),
        (#"\br[0-9a-f]{12}\b"#, "<release>"),
        (#"\bj[0-9a-f]{16}\b"#, "<job>"),
        (#"127\.0\.0\.1:\d+"#, "127.0.0.1:<port>"),
    ]

    static func placeholders(_ text: String) -> String {
        var text = text
        for (pattern, placeholder) in volatile {
            text = text.replacingOccurrences(of: pattern, with: placeholder, options: .regularExpression)
        }
        return text.components(separatedBy: "\n").map { $0.replacingOccurrences(of: " +$", with: "", options: .regularExpression) }
            .joined(separator: "\n")
    }
}
