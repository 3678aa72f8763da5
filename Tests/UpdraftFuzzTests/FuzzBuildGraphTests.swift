import Foundation
import Testing

/// `make fuzz` passes `-sanitize=fuzzer,address` to every module `updraft-fuzz` builds; if
/// that reaches UpdraftHTTP, the OpenAPI generator plugin is built with it and its link
/// fails (ld.gold "internal error in format_file_lineno"), and CI loses its fuzz run. So
/// the fuzz executable's modules, read from Package.swift, never include the HTTP stack.
@Suite struct FuzzBuildGraphTests {
    static let manifest = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Package.swift")

    /// Each target's name and the package targets it names as dependencies (products of
    /// other packages are `.product(name:package:)` and are skipped).
    static func targets(_ text: String) -> [String: [String]] {
        var graph: [String: [String]] = [:]
        let starts = [".target(", ".executableTarget(", ".testTarget(", ".systemLibrary("]
        var chunks = [Substring(text)]
        for start in starts { chunks = chunks.flatMap { $0.split(separator: start, omittingEmptySubsequences: false).map(Substring.init) } }
        for chunk in chunks.dropFirst() {
            let quoted = chunk.split(separator: "\"", omittingEmptySubsequences: false)
            guard quoted.count > 2, quoted[0].hasSuffix("name: ") else { continue }
            var names: [String] = []
            for index in stride(from: 1, to: quoted.count - 1, by: 2) {
                let before = quoted[index - 1]
                guard !before.hasSuffix("name: "), !before.hasSuffix("package: "), !before.hasSuffix("path: ") else { continue }
                names.append(String(quoted[index]))
            }
            graph[String(quoted[1])] = names
        }
        return graph
    }

    @Test func theFuzzExecutableBuildsNoHTTPStack() throws {
        let graph = Self.targets(try String(contentsOf: Self.manifest, encoding: .utf8))
        #expect(graph["UpdraftHTTP"] != nil && graph["UpdraftFuzz"] != nil, "Package.swift was not read: \(graph.keys.sorted())")
        var reached: Set<String> = []
        var next = ["updraft-fuzz"]
        while let target = next.popLast() {
            guard reached.insert(target).inserted else { continue }
            next += (graph[target] ?? []).filter { graph[$0] != nil }
        }
        #expect(reached.contains("UpdraftFuzz") && reached.contains("UpdraftWire"), "graph walk failed: \(reached.sorted())")
        for heavy in ["UpdraftHTTP", "UpdraftApp", "UpdraftTools", "UpdraftStore"] {
            #expect(!reached.contains(heavy), "updraft-fuzz builds \(heavy) (\(reached.sorted()))")
        }
    }
}
