import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftHTTP

/// What the API says when a request is wrong is a problem the caller can act on: no bare
/// 404, 405 with Allow, a `bad_request` that names the field (not the decoder's dump),
/// JSON that writes `/` as `/`, and the document's identifier bounds the code's.
@Suite struct ProblemShapeTests {
    @Test func aPathNoRouteTakesIsAProblem404() async throws {
        try await APIServer.with { api in
            for path in ["/v1/nothing/j1", "/nothing", "/v1/firmware/a@1/nothing", "/"] {
                for token in [api.tokens[.read], nil] {
                    let response = try await api.client.get(path, token: token)
                    #expect(response.status == 404, "\(path)")
                    #expect(response.headers["content-type"] == "application/problem+json", "\(path)")
                    #expect(response.json["code"] as? String == "not_found", "\(path): \(response.text)")
                }
            }
        }
    }

    @Test func aMethodThePathDoesNotTakeIs405WithAllow() async throws {
        try await APIServer.with { api in
            let cases: [(String, String, String)] = [
                ("DELETE", "/v1/events", "GET"), ("PUT", "/v1/firmware", "GET, POST"), ("TRACE", "/healthz", "GET"),
                ("PATCH", "/v1/webhooks/3", "DELETE, GET"), ("GET", "/v1/releases/r1/pause", "POST"),
            ]
            for (method, path, allow) in cases {
                let response = try await api.client.send(method, path, token: api.tokens[.admin])
                #expect(response.status == 405, "\(method) \(path): \(response.status) \(response.text)")
                #expect(response.headers["allow"] == allow, "\(method) \(path)")
                #expect(response.json["code"] as? String == "method_not_allowed", "\(method) \(path): \(response.text)")
            }
            // The methods it takes still work.
            #expect(try await api.get("/v1/events", .read).status == 200)
        }
    }

    @Test func aBadRequestNamesTheFieldNotTheDecoder() async throws {
        try await APIServer.with { api in
            let page = try await api.client.get("/v1/events?limit=ten", token: api.tokens[.read])
            let webhook = try await api.client.send(
                "POST", "/v1/webhooks", token: api.tokens[.admin], headers: [("Content-Type", "application/json")],
                body: Array(#"{"url":"http://127.0.0.1:9/h","secret":7}"#.utf8))
            let notJSON = try await api.client.send(
                "POST", "/v1/webhooks", token: api.tokens[.admin], headers: [("Content-Type", "application/json")], body: Array("{url".utf8))
            for (response, names) in [(page, "limit"), (webhook, "secret"), (notJSON, "JSON")] {
                #expect(response.status == 400, "\(response.text)")
                #expect(response.json["code"] as? String == "bad_request")
                let detail = response.json["detail"] as? String ?? ""
                #expect(detail.contains(names), "names \(names): \(detail)")
                for leak in ["CodingKeys", "DecodingError", "operationID", "Server error", "underlying", "Swift."] {
                    #expect(!detail.contains(leak), "\(leak) in \(detail)")
                }
            }
        }
    }

    @Test func successJSONWritesSlashesPlainly() async throws {
        try await APIServer.with { api in
            let added = try await api.client.send(
                "POST", "/v1/webhooks", token: api.tokens[.admin], headers: [("Content-Type", "application/json")],
                body: Array(#"{"url":"http://127.0.0.1:9/hooks/a","secret":"0123456789abcdef0123"}"#.utf8))
            #expect(added.status == 201, "\(added.text)")
            let list = try await api.get("/v1/webhooks", .admin)
            #expect(list.text.contains("http://127.0.0.1:9/hooks/a"), "\(list.text)")
            #expect(!list.text.contains(#"\/"#), "\(list.text)")
        }
    }

    /// openapi.yaml's identifier schemas have the bounds UpdraftCore checks.
    @Test func theDocumentsIdentifierBoundsAreTheCodes() throws {
        let document = try SourceScan.text("Sources/UpdraftHTTP/openapi.yaml")
        func maxLength(of schema: String) -> Int? {
            guard let block = document.components(separatedBy: "\n    \(schema):\n").dropFirst().first else { return nil }
            return block.firstMatch(of: /maxLength: (\d+)/).flatMap { Int($0.output.1) }
        }
        #expect(maxLength(of: "Identifier") == DeviceID.maxLength)
        #expect(Set([DeviceID.maxLength, ProductID.maxLength, FirmwareVersion.maxLength, GroupID.maxLength, TokenName.maxLength]).count == 1)
        #expect(maxLength(of: "ReleaseIdentifier") == ReleaseID.maxLength)
        let kinds = document.firstMatch(of: #/    EventKind:\n(?:      .*\n)*?      enum: \[([a-z_., ]+)\]/#).map { $0.output.1.split(separator: ", ").map(String.init) }
        #expect(kinds == EventKind.allCases.map(\.rawValue), "openapi.yaml's EventKind enum is EventKind's cases")
        #expect(Problem.status(of: "invalid_signing_key") == .unprocessableContent)
        #expect(Problem.status(of: "invalid_public_key") == .unprocessableContent)
    }
}
