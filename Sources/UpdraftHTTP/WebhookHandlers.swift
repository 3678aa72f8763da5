import Foundation
import OpenAPIRuntime
import UpdraftCore

/// `/v1/webhooks`: what `updraft webhook` does, for admin tokens. Secrets go in, never out.
extension APIHandlers {
    func listWebhooks(_ input: Operations.ListWebhooks.Input) async throws -> Operations.ListWebhooks.Output {
        .ok(.init(body: .json(.init(webhooks: try await backend.store.webhooks().map(Components.Schemas.Webhook.init)))))
    }

    func addWebhook(_ input: Operations.AddWebhook.Input) async throws -> Operations.AddWebhook.Output {
        guard case .json(let body) = input.body else { throw UpdraftError("bad_request", "Send the webhook as application/json.") }
        try Webhook.validate(url: body.url, secret: body.secret)
        let kinds = try EventKind.list(body.kinds?.map(\.rawValue).joined(separator: ","))
        if let after = body.after, after < 0 { throw UpdraftError("invalid_after", "after must be 0 or a sequence number, not \(after).") }
        let webhook = try await backend.store.addWebhook(url: body.url, secret: body.secret, kinds: kinds, after: body.after, at: Date())
        return .created(.init(body: .json(.init(webhook))))
    }

    func getWebhook(_ input: Operations.GetWebhook.Input) async throws -> Operations.GetWebhook.Output {
        let id = input.path.id
        let limit = input.query.limit ?? 20
        guard (1...100).contains(limit) else { throw UpdraftError("invalid_limit", "limit must be 1 to 100, not \(limit).") }
        guard let webhook = try await backend.store.webhooks().first(where: { $0.id == id }) else { throw UpdraftError.webhookNotFound(id) }
        let deliveries = try await backend.store.webhookDeliveries(id, limit: limit)
        return .ok(.init(body: .json(.init(webhook: .init(webhook), deliveries: deliveries.map(Components.Schemas.WebhookDelivery.init)))))
    }

    func removeWebhook(_ input: Operations.RemoveWebhook.Input) async throws -> Operations.RemoveWebhook.Output {
        try await backend.store.removeWebhook(input.path.id)
        return .noContent(.init())
    }

    func enableWebhook(_ input: Operations.EnableWebhook.Input) async throws -> Operations.EnableWebhook.Output {
        let webhook = try await backend.store.enableWebhook(input.path.id, at: Date(), actor: CallerMiddleware.current?.name.rawValue)
        backend.eventSignal.notify()
        return .ok(.init(body: .json(.init(webhook))))
    }
}

extension Components.Schemas.Webhook {
    init(_ webhook: Webhook) {
        let state: StatePayload = webhook.isDisabled ? .disabled : webhook.failingSince != nil ? .failing : .active
        self.init(
            id: webhook.id, url: webhook.url, kinds: webhook.kinds.map(\.rawValue).sorted(), cursor: webhook.cursor, state: state,
            createdAt: webhook.createdAt, failingSince: webhook.failingSince, disabledAt: webhook.disabledAt)
    }
}

extension Components.Schemas.WebhookDelivery {
    init(_ delivery: WebhookDelivery) {
        self.init(
            time: delivery.time, firstSeq: delivery.firstSeq, lastSeq: delivery.lastSeq, count: delivery.count, attempt: delivery.attempt,
            status: delivery.status, error: delivery.error, milliseconds: delivery.milliseconds)
    }
}
