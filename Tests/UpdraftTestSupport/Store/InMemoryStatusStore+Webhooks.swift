import Foundation
import UpdraftCore

/// Webhooks, with the SQLite store's rules (ids never reused, cursors only forward, the
/// newest 100 deliveries kept).
extension InMemoryStatusStore {
    package func addWebhook(url: String, secret: String, kinds: Set<EventKind>, after: Int64?, at date: Date) async throws -> Webhook {
        try write { state in
            let last = Int64(state.events.count)
            state.lastWebhookID += 1
            let webhook = Webhook(
                id: state.lastWebhookID, url: url, secret: secret, kinds: kinds, cursor: min(max(after ?? last, 0), last), createdAt: date)
            state.webhooks[webhook.id] = webhook
            return webhook
        }
    }

    package func webhooks() async throws -> [Webhook] {
        try read { $0.webhooks.values.sorted { $0.id < $1.id } }
    }

    package func removeWebhook(_ id: Int64) async throws -> Webhook {
        try write { state in
            guard let webhook = state.webhooks.removeValue(forKey: id) else { throw UpdraftError.webhookNotFound(id) }
            state.webhookDeliveries[id] = nil
            return webhook
        }
    }

    package func recordWebhookDelivery(_ delivery: WebhookDelivery, webhook: Webhook, event: UpdraftEvent?) async throws {
        try write { state in
            guard var stored = state.webhooks[webhook.id] else { throw UpdraftError.webhookNotFound(webhook.id) }
            stored.cursor = max(stored.cursor, webhook.cursor)
            stored.failingSince = webhook.failingSince
            stored.disabledAt = stored.disabledAt ?? webhook.disabledAt
            state.webhooks[webhook.id] = stored
            state.webhookDeliveries[webhook.id, default: []].append(delivery)
            state.webhookDeliveries[webhook.id] = Array(state.webhookDeliveries[webhook.id, default: []].suffix(100))
            if let event { _ = state.append([event]) }
        }
    }

    package func enableWebhook(_ id: Int64, at date: Date, actor: String?) async throws -> Webhook {
        try write { state in
            guard var webhook = state.webhooks[id] else { throw UpdraftError.webhookNotFound(id) }
            (webhook.failingSince, webhook.disabledAt) = (nil, nil)
            state.webhooks[id] = webhook
            _ = state.append([
                UpdraftEvent(kind: .webhookEnabled, time: date, detail: "webhook \(id) (\(webhook.url)) resumes after seq \(webhook.cursor)", actor: actor)
            ])
            return webhook
        }
    }

    package func webhookDeliveries(_ id: Int64, limit: Int) async throws -> [WebhookDelivery] {
        try read { Array(($0.webhookDeliveries[id] ?? []).reversed().prefix(max(0, limit))) }
    }
}
