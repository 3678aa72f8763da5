import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftHTTP

/// `/v1/webhooks` on a real server: admin only, secrets in and never out, bad input as problems.
@Suite(.timeLimit(.minutes(2))) struct WebhookAPITests {
    static let secret = "0123456789abcdef-secret"

    @Test func addListShowEnableRemoveAsAdminAndNeverTheSecret() async throws {
        try await APIServer.with { api in
            let admin = api.tokens[.admin]!
            let added = try await api.client.call(
                "POST", "/v1/webhooks", token: admin, json: ["url": "https://backend.example/hook", "secret": Self.secret, "kinds": ["job.transition"], "after": 0])
            #expect(added.status == 201, "\(added.text)")
            #expect(!added.text.contains(Self.secret))
            let id = try #require((added.json["id"] as? NSNumber)?.int64Value)
            #expect(added.json["state"] as? String == "active")
            #expect(added.json["kinds"] as? [String] == ["job.transition"])
            let list = try await api.client.call("GET", "/v1/webhooks", token: admin)
            #expect(list.status == 200)
            #expect((list.json["webhooks"] as? [[String: Any]])?.count == 1)
            #expect(!list.text.contains(Self.secret))
            // The stored secret is the one given (the gateway signs with it).
            #expect(try await api.store.webhooks().first?.secret == Self.secret)
            let show = try await api.client.call("GET", "/v1/webhooks/\(id)", token: admin)
            #expect(show.status == 200)
            #expect((show.json["deliveries"] as? [Any])?.isEmpty == true)
            #expect(!show.text.contains(Self.secret))
            let enabled = try await api.client.call("POST", "/v1/webhooks/\(id)/enable", token: admin)
            #expect(enabled.status == 200, "\(enabled.text)")
            #expect(try await api.store.events(after: 0, limit: 10).last?.actor == "t-admin")
            #expect(try await api.client.call("DELETE", "/v1/webhooks/\(id)", token: admin).status == 204)
            let gone = try await api.client.call("GET", "/v1/webhooks/\(id)", token: admin)
            #expect(gone.status == 404)
            #expect(gone.json["code"] as? String == "webhook_not_found")
            #expect(try await api.client.call("DELETE", "/v1/webhooks/\(id)", token: admin).status == 404)
        }
    }

    @Test func readAndOperateTokensGet403NoTokenGets401() async throws {
        try await APIServer.with { api in
            let hook = try await api.store.addWebhook(url: "http://127.0.0.1:9/h", secret: Self.secret, kinds: [], after: nil, at: Date())
            let before = try await api.store.webhooks()
            let calls: [(String, String, Any?)] = [
                ("GET", "/v1/webhooks", nil), ("POST", "/v1/webhooks", ["url": "http://x.example/h", "secret": Self.secret]),
                ("GET", "/v1/webhooks/\(hook.id)", nil), ("DELETE", "/v1/webhooks/\(hook.id)", nil), ("POST", "/v1/webhooks/\(hook.id)/enable", nil),
            ]
            for (method, path, body) in calls {
                for scope in [TokenScope.read, .operate] {
                    let response = try await api.client.call(method, path, token: api.tokens[scope]!, json: body)
                    #expect(response.status == 403, "\(method) \(path) as \(scope): \(response.status)")
                    #expect(response.json["code"] as? String == "insufficient_scope")
                }
                #expect(try await api.client.call(method, path, json: body).status == 401, "\(method) \(path)")
                #expect(try await api.client.call(method, path, token: api.revoked, json: body).status == 401, "\(method) \(path)")
            }
            #expect(try await api.store.webhooks() == before, "nothing changed")
        }
    }

    @Test func badInputIsA400Problem() async throws {
        try await APIServer.with { api in
            let admin = api.tokens[.admin]!
            let bodies: [(Any, String)] = [
                (["url": "ftp://x.example/h", "secret": Self.secret], "invalid_webhook_url"),
                (["url": "not a url", "secret": Self.secret], "invalid_webhook_url"),
                (["url": "http:///nohost", "secret": Self.secret], "invalid_webhook_url"),
                (["url": "http://x.example/h", "secret": "short"], "*"),
                // An unknown kind breaks openapi.yaml's EventKind enum: refused before the handler.
                (["url": "http://x.example/h", "secret": Self.secret, "kinds": ["job.transition", "nope"]], "bad_request"),
                (["url": "http://x.example/h", "secret": Self.secret, "after": -3], "*"),
                (["url": "http://x.example/h"], "bad_request"),
                (Array("{not json".utf8), "bad_request"),
            ]
            for (body, code) in bodies {
                let response = try await api.client.call("POST", "/v1/webhooks", token: admin, json: body)
                #expect(response.status == 400, "\(body): \(response.status) \(response.text)")
                #expect(code == "*" || response.json["code"] as? String == code, "\(body): \(response.text)")
            }
            #expect(try await api.client.call("GET", "/v1/webhooks/abc", token: admin).status == 400)
            #expect(try await api.client.call("GET", "/v1/webhooks/1?limit=0", token: admin).status == 400)
            #expect(try await api.client.call("POST", "/v1/webhooks/77/enable", token: admin).status == 404)
            #expect(try await api.store.webhooks().isEmpty)
        }
    }
}
