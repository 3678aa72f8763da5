import Foundation
import Testing
import UpdraftTestSupport

@testable import UpdraftHTTP

/// Every problem code the HTTP module can send is in the "HTTP API" article: the codes are
/// read from the module's sources (`UpdraftError("code", ...)` and `code: "..."` literals,
/// and the codes Problem.swift maps to a status), so a new code without a line in the
/// article fails here.
@Suite struct HTTPAPIArticleTests {
    static let articlePath = "Sources/UpdraftHTTP/Documentation.docc/HTTPAPI.md"

    @Test func theArticleListsEveryCodeTheHTTPSourcesThrow() throws {
        let thrown = try SourceScan.literals(#"UpdraftError\(\s*"([a-z_]+)""#, in: ["Sources/UpdraftHTTP"])
        let problems = try SourceScan.literals(#"code:\s*"([a-z_]+)""#, in: ["Sources/UpdraftHTTP"])
        let codes = thrown.union(problems)
        #expect(codes.isSuperset(of: ["unauthorized", "insufficient_scope", "unsupported_media_type", "bad_request", "invalid_limit"]))
        #expect(codes.count >= 15, "the scan found too few codes: \(codes.sorted())")
        let text = try SourceScan.text(Self.articlePath)
        let missing = codes.filter { !text.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "problem codes missing from HTTPAPI.md: \(missing)")
    }

    /// The codes Problem.swift gives a status (409, 422, ...): each is one the API can answer.
    @Test func theArticleListsEveryCodeProblemMaps() throws {
        // Quoted lowercase words joined by underscores: the codes, not the suffixes
        // (`"_not_found"`) or prefixes (`"invalid"`) the status rules test.
        let codes = try SourceScan.literals(#""([a-z]+(?:_[a-z]+)+)""#, in: ["Sources/UpdraftHTTP/Problem.swift"])
        #expect(codes.isSuperset(of: ["firmware_in_use", "not_a_fleet_release", "invalid_release_options", "manifest_signature"]))
        #expect(codes.count >= 30, "the scan found too few codes: \(codes.sorted())")
        let text = try SourceScan.text(Self.articlePath)
        let missing = codes.filter { !text.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "codes of Problem.swift missing from HTTPAPI.md: \(missing)")
    }

    /// The status the article gives each code in its API tables is the one the server
    /// sends (`Problem.status(of:)`); the download route's table sets its own (410
    /// `job_finished`, 403 `device_revoked`), and says so.
    @Test func everyStatusInTheArticlesAPITablesIsTheOneTheServerSends() throws {
        let text = try SourceScan.text(Self.articlePath)
        let api = try #require(text.components(separatedBy: "**Firmware downloads**").first)
        let row = /^\| (\d{3}) \| `([a-z_]+)` \|/.anchorsMatchLineEndings()
        var checked = 0
        for match in api.matches(of: row) {
            let (status, code) = (Int(match.output.1)!, String(match.output.2))
            #expect(Problem.status(of: code).code == status, "HTTPAPI.md says \(status) for `\(code)`; the server sends \(Problem.status(of: code).code)")
            checked += 1
        }
        #expect(checked >= 60, "the scan found too few rows: \(checked)")
        #expect(Problem.status(of: "job_finished") == .conflict && Problem.status(of: "device_revoked") == .conflict)
        #expect(text.contains("| 410 | `job_finished` |") && text.contains("| 403 | `device_revoked` |"), "the download table keeps its own")
    }
}
