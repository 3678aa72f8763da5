import Foundation
import Testing

/// Every problem code the HTTP module can send is in the "HTTP API" article: the codes are
/// read from the module's sources (`UpdraftError("code", ...)` and `code: "..."` literals,
/// and the codes Problem.swift maps to a status), so a new code without a line in the
/// article fails here.
@Suite struct HTTPAPIArticleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let articlePath = "Sources/UpdraftHTTP/Documentation.docc/HTTPAPI.md"

    /// The first capture of each match of `pattern` in the Swift files under `folder`.
    static func literals(_ pattern: String, in folder: String) throws -> Set<String> {
        let regex = try Regex(pattern)
        let base = root.appendingPathComponent(folder)
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: base.path, isDirectory: &isFolder) else { throw CocoaError(.fileNoSuchFile) }
        let files =
            isFolder.boolValue
            ? FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? [] : [base]
        var found: Set<String> = []
        for file in files where file.pathExtension == "swift" {
            let text = try String(contentsOf: file, encoding: .utf8)
            for match in text.matches(of: regex) {
                if let code = match.output[1].substring { found.insert(String(code)) }
            }
        }
        return found
    }

    static func article(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    @Test func theArticleListsEveryCodeTheHTTPSourcesThrow() throws {
        let thrown = try Self.literals(#"UpdraftError\(\s*"([a-z_]+)""#, in: "Sources/UpdraftHTTP")
        let problems = try Self.literals(#"code:\s*"([a-z_]+)""#, in: "Sources/UpdraftHTTP")
        let codes = thrown.union(problems)
        #expect(codes.isSuperset(of: ["unauthorized", "insufficient_scope", "unsupported_media_type", "bad_request", "invalid_limit"]))
        #expect(codes.count >= 15, "the scan found too few codes: \(codes.sorted())")
        let text = try Self.article(Self.articlePath)
        let missing = codes.filter { !text.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "problem codes missing from HTTPAPI.md: \(missing)")
    }

    /// The codes Problem.swift gives a status (409, 422, ...): each is one the API can answer.
    @Test func theArticleListsEveryCodeProblemMaps() throws {
        // Quoted lowercase words joined by underscores: the codes, not the suffixes
        // (`"_not_found"`) or prefixes (`"invalid"`) the status rules test.
        let codes = try Self.literals(#""([a-z]+(?:_[a-z]+)+)""#, in: "Sources/UpdraftHTTP/Problem.swift")
        #expect(codes.isSuperset(of: ["firmware_in_use", "not_a_fleet_release", "invalid_release_options", "manifest_signature"]))
        #expect(codes.count >= 30, "the scan found too few codes: \(codes.sorted())")
        let text = try Self.article(Self.articlePath)
        let missing = codes.filter { !text.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "codes of Problem.swift missing from HTTPAPI.md: \(missing)")
    }
}
