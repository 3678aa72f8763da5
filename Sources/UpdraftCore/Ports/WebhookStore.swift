import Foundation

/// The webhooks of the status store (part of ``StatusStore``): the endpoints, their
/// durable cursors and their delivery log.
public protocol WebhookStore: Sendable {
    /// Stores a new webhook whose cursor is the last event now in the log (it gets what
    /// happens from now on; `after` moves it back, 0 for the whole log) and returns it with its id.
    func addWebhook(url: String, secret: String, kinds: Set<EventKind>, after: Int64?, at date: Date) async throws -> Webhook
    /// Every webhook, by id.
    func webhooks() async throws -> [Webhook]
    /// Removes a webhook and its delivery log. Throws `webhook_not_found`.
    @discardableResult
    func removeWebhook(_ id: Int64) async throws -> Webhook
    /// Writes what a delivery attempt changed, in one transaction: the log row (the log
    /// keeps the newest 100 per webhook), the webhook's cursor (only forward), its run of
    /// failures and disabled date, and `event` (a `webhook.disabled`) when given.
    /// Throws `webhook_not_found` when it was removed meanwhile.
    func recordWebhookDelivery(_ delivery: WebhookDelivery, webhook: Webhook, event: UpdraftEvent?) async throws
    /// Clears the disabled state and the run of failures, with a `webhook.enabled` event
    /// naming `actor`. Throws `webhook_not_found`.
    @discardableResult
    func enableWebhook(_ id: Int64, at date: Date, actor: String?) async throws -> Webhook
    /// The newest deliveries of a webhook, newest first.
    func webhookDeliveries(_ id: Int64, limit: Int) async throws -> [WebhookDelivery]
}

extension UpdraftError {
    public static func webhookNotFound(_ id: Int64) -> UpdraftError {
        .notFound("webhook", "\(id)", hint: "List them with `updraft webhook list`.")
    }
}
