import Foundation
import Testing
import UpdraftCore

/// Webhooks, as every `StatusStore` must keep them.
package enum WebhookStoreContract {
    package static let checks: [StoreContractCheck] = [
        StoreContractCheck("a webhook starts after the log's last event, or where asked, and its cursor only moves forward", webhookCursor),
        StoreContractCheck("deliveries are logged newest first, 100 kept; disabling appends an event, enabling clears it", webhookDeliveries),
        StoreContractCheck("removing a webhook removes its log; an unknown id is webhook_not_found", webhookRemove),
    ]

    static let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    static func delivery(_ id: Int64, _ seqs: ClosedRange<Int64>, attempt: Int = 1, error: String? = nil, at offset: Double = 0) -> WebhookDelivery {
        WebhookDelivery(
            webhookID: id, time: t0.addingTimeInterval(offset), firstSeq: seqs.lowerBound, lastSeq: seqs.upperBound, count: seqs.count,
            attempt: attempt, status: error == nil ? 204 : 500, error: error, milliseconds: 3)
    }

    static func webhookCursor(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        try await store.commit(StoreBatch(events: (0..<5).map { _ in UpdraftEvent(kind: .deviceOnline, time: t0, deviceID: "d") }))
        let fresh = try await store.addWebhook(url: "http://127.0.0.1:9/h", secret: String(repeating: "s", count: 32), kinds: [], after: nil, at: t0)
        #expect(fresh.cursor == 5)
        let whole = try await store.addWebhook(
            url: "http://127.0.0.1:9/w", secret: String(repeating: "s", count: 32), kinds: [.jobTransition, .deviceOnline], after: 0, at: t0)
        #expect(whole.cursor == 0)
        #expect(whole.id > fresh.id)
        let beyond = try await store.addWebhook(url: "http://127.0.0.1:9/b", secret: String(repeating: "s", count: 32), kinds: [], after: 99, at: t0)
        #expect(beyond.cursor == 5, "a cursor past the log is the log's end")
        var moved = whole
        moved.cursor = 3
        try await store.recordWebhookDelivery(delivery(whole.id, 1...3), webhook: moved, event: nil)
        moved.cursor = 1
        try await store.recordWebhookDelivery(delivery(whole.id, 1...1), webhook: moved, event: nil)
        let stored = try await fixture.openAnother().webhooks().first { $0.id == whole.id }
        #expect(stored?.cursor == 3)
        #expect(stored?.kinds == [.jobTransition, .deviceOnline])
        #expect(stored?.secret == String(repeating: "s", count: 32))
    }

    static func webhookDeliveries(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let hook = try await store.addWebhook(url: "http://127.0.0.1:9/h", secret: String(repeating: "k", count: 20), kinds: [], after: 0, at: t0)
        for attempt in 1...105 {
            var failing = hook
            failing.failingSince = t0
            try await store.recordWebhookDelivery(delivery(hook.id, 1...1, attempt: attempt, error: "HTTP 500", at: Double(attempt)), webhook: failing, event: nil)
        }
        let log = try await store.webhookDeliveries(hook.id, limit: 1000)
        #expect(log.count == 100)
        #expect(log.first?.attempt == 105)
        #expect(log.last?.attempt == 6)
        #expect(try await store.webhookDeliveries(hook.id, limit: 2).map(\.attempt) == [105, 104])
        var disabled = hook
        (disabled.failingSince, disabled.disabledAt) = (t0, t0.addingTimeInterval(200))
        let event = UpdraftEvent(kind: .webhookDisabled, time: t0.addingTimeInterval(200), detail: "webhook \(hook.id) disabled")
        try await store.recordWebhookDelivery(delivery(hook.id, 1...1, attempt: 106, error: "timeout", at: 200), webhook: disabled, event: event)
        #expect(try await store.webhooks().first?.isDisabled == true)
        #expect(try await store.events(after: 0, limit: 10).last?.kind == .webhookDisabled)
        let enabled = try await store.enableWebhook(hook.id, at: t0.addingTimeInterval(300), actor: "cli:ops")
        #expect(!enabled.isDisabled && enabled.failingSince == nil)
        #expect(try await store.webhooks().first?.isDisabled == false)
        let last = try await store.events(after: 0, limit: 10).last
        #expect(last?.kind == .webhookEnabled && last?.actor == "cli:ops")
    }

    static func webhookRemove(_ fixture: any StoreFixture) async throws {
        let store = fixture.store
        let hook = try await store.addWebhook(url: "http://127.0.0.1:9/h", secret: String(repeating: "k", count: 20), kinds: [], after: 0, at: t0)
        try await store.recordWebhookDelivery(delivery(hook.id, 1...1), webhook: hook, event: nil)
        #expect(try await store.removeWebhook(hook.id).url == "http://127.0.0.1:9/h")
        #expect(try await store.webhooks().isEmpty)
        #expect(try await store.webhookDeliveries(hook.id, limit: 10).isEmpty)
        for call in [{ _ = try await store.removeWebhook(hook.id) }, { _ = try await store.enableWebhook(hook.id, at: t0, actor: nil) },
                     { try await store.recordWebhookDelivery(delivery(hook.id, 1...1), webhook: hook, event: nil) }] {
            let error = await #expect(throws: UpdraftError.self) { try await call() }
            #expect(error?.code == "webhook_not_found")
        }
        // Ids are not reused: a delivery logged for the old one never lands on a new one.
        let next = try await store.addWebhook(url: "http://127.0.0.1:9/n", secret: String(repeating: "k", count: 20), kinds: [], after: 0, at: t0)
        #expect(next.id > hook.id)
    }
}
