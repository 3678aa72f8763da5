import Foundation
import UpdraftCore
import UpdraftHTTP

/// Webhooks (README "Events for backends"): the running gateway reads the list within a
/// second and posts to each from its cursor.
extension Operations {
    /// Adds a webhook for `kinds` (comma-separated; empty: every kind), starting after the
    /// log's last event, or after `after` (0: the whole log).
    public func addWebhook(url: String, secret: String, kinds: String?, after: Int64?) async throws -> Webhook {
        try Webhook.validate(url: url, secret: secret)
        let kinds = try EventKind.list(kinds)
        if let after, after < 0 { throw UpdraftError("invalid_after", "--after must be 0 or a sequence number, not \(after).") }
        return try await store.addWebhook(url: url, secret: secret, kinds: kinds, after: after, at: Date())
    }

    public func webhooks() async throws -> [Webhook] { try await store.webhooks() }

    /// A webhook and its newest deliveries, newest first.
    public func webhook(_ id: Int64, deliveries limit: Int = 20) async throws -> (Webhook, [WebhookDelivery]) {
        guard let webhook = try await store.webhooks().first(where: { $0.id == id }) else { throw UpdraftError.webhookNotFound(id) }
        return (webhook, try await store.webhookDeliveries(id, limit: limit))
    }

    public func removeWebhook(_ id: Int64) async throws -> Webhook { try await store.removeWebhook(id) }

    /// Re-enables a disabled webhook: it resumes at its cursor (nothing was skipped).
    public func enableWebhook(_ id: Int64) async throws -> Webhook {
        try await store.enableWebhook(id, at: Date(), actor: actor.name)
    }
}
