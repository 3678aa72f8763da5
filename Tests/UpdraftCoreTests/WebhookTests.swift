import Foundation
import Testing
import UpdraftCore

/// The pure parts of webhooks: the signature, the backoff, and when a run of failures disables one.
struct WebhookTests {
    @Test func theSignatureIsHMACSHA256OfTheBody() {
        // RFC 4231, test case 2.
        #expect(
            Webhook.signature(of: Array("what do ya want for nothing?".utf8), secret: "Jefe")
                == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(Webhook.signature(of: [1, 2], secret: "a-secret") != Webhook.signature(of: [1, 3], secret: "a-secret"))
    }

    @Test func backoffDoublesIsCappedAndJitteredWithinHalfToAll() {
        let backoff = WebhookBackoff(base: .milliseconds(100), cap: .seconds(1))
        #expect(backoff.delay(after: 1, unit: 1) == .milliseconds(100))
        #expect(backoff.delay(after: 1, unit: 0) == .milliseconds(50))
        #expect(backoff.delay(after: 3, unit: 1) == .milliseconds(400))
        #expect(backoff.delay(after: 5, unit: 1) == .seconds(1))
        #expect(backoff.delay(after: 500, unit: 1) == .seconds(1), "no overflow")
        #expect(backoff.delay(after: 500, unit: 0) == .milliseconds(500))
        for _ in 0..<100 {
            let d = backoff.delay(after: 2, unit: Double.random(in: 0...1))
            #expect(d >= .milliseconds(100) && d <= .milliseconds(200))
        }
    }

    static let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    static func attempt(_ offset: Double, ok: Bool, last: Int64 = 9) -> WebhookDelivery {
        WebhookDelivery(
            webhookID: 1, time: t0.addingTimeInterval(offset), firstSeq: 5, lastSeq: last, count: 5, attempt: 1, status: ok ? 200 : 500,
            error: ok ? nil : "HTTP 500", milliseconds: 1)
    }

    @Test func aRunOfFailuresDisablesOnlyOnceItLastedDisableAfterAndASuccessEndsIt() {
        var hook = Webhook(id: 1, url: "https://b.example/h", secret: "s", kinds: [], cursor: 4, createdAt: Self.t0)
        var event: UpdraftEvent?
        (hook, event) = hook.recording(Self.attempt(0, ok: false), disableAfter: .seconds(60))
        #expect(hook.failingSince == Self.t0 && !hook.isDisabled && event == nil && hook.cursor == 4)
        (hook, event) = hook.recording(Self.attempt(59, ok: false), disableAfter: .seconds(60))
        #expect(!hook.isDisabled && event == nil && hook.failingSince == Self.t0)
        (hook, _) = hook.recording(Self.attempt(59.5, ok: true), disableAfter: .seconds(60))
        #expect(hook.failingSince == nil && hook.cursor == 9)
        (hook, _) = hook.recording(Self.attempt(100, ok: false), disableAfter: .seconds(60))
        (hook, event) = hook.recording(Self.attempt(160, ok: false), disableAfter: .seconds(60))
        #expect(hook.isDisabled && hook.disabledAt == Self.t0.addingTimeInterval(160))
        #expect(event?.kind == .webhookDisabled && event?.detail?.contains("webhook enable 1") == true)
        (hook, event) = hook.recording(Self.attempt(170, ok: false), disableAfter: .seconds(60))
        #expect(event == nil, "disabled once")
    }

    @Test func urlsSecretsAndKindsAreChecked() throws {
        try Webhook.validate(url: "https://backend.example:8443/updraft?x=1", secret: String(repeating: "k", count: 16))
        for url in ["ftp://x/h", "x.example/h", "http://", "", "javascript:alert(1)", "http:///path"] {
            #expect(throws: UpdraftError.self, "\(url)") { try Webhook.validate(url: url, secret: String(repeating: "k", count: 16)) }
        }
        #expect(throws: UpdraftError.self) { try Webhook.validate(url: "https://b.example/h", secret: "short") }
        #expect(throws: UpdraftError.self) { try Webhook.validate(url: "https://b.example/h", secret: String(repeating: "k", count: 257)) }
        #expect(try EventKind.list("job.transition, device.online") == [.jobTransition, .deviceOnline])
        #expect(try EventKind.list(nil).isEmpty)
        #expect(throws: UpdraftError.self) { try EventKind.list("job.transition,,") }
    }
}
