import Foundation
import UpdraftCore
import UpdraftHTTP

/// A webhook as listed (`webhook list --json`, the API's Webhook): everything but its secret.
public struct WebhookRow: Codable, Sendable {
    public var id: Int64
    public var url: String
    public var kinds: [String]
    public var cursor: Int64
    public var state: String
    public var created_at: String
    public var failing_since: String?
    public var disabled_at: String?

    public init(_ webhook: Webhook) {
        (id, url, cursor) = (webhook.id, webhook.url, webhook.cursor)
        kinds = webhook.kinds.map(\.rawValue).sorted()
        state = webhook.isDisabled ? "disabled" : webhook.failingSince != nil ? "failing" : "active"
        created_at = webhook.createdAt.formatted(.iso8601)
        failing_since = webhook.failingSince?.formatted(.iso8601)
        disabled_at = webhook.disabledAt?.formatted(.iso8601)
    }
}

/// `webhook show --json`: the webhook and its recent deliveries, newest first.
public struct WebhookDetail: Codable, Sendable {
    public struct Delivery: Codable, Sendable {
        public var time: String
        public var first_seq, last_seq: Int64
        public var count, attempt: Int
        public var status: Int?
        public var error: String?
        public var milliseconds: Int

        public init(_ d: WebhookDelivery) {
            (time, first_seq, last_seq, count, attempt) = (d.time.formatted(.iso8601), d.firstSeq, d.lastSeq, d.count, d.attempt)
            (status, error, milliseconds) = (d.status, d.error, d.milliseconds)
        }
    }
    public var webhook: WebhookRow
    public var deliveries: [Delivery]
}

/// The webhook commands, local and remote (scope admin over the API).
public protocol WebhookClient: Sendable {
    func webhooks() async throws -> [WebhookRow]
    func webhook(_ id: Int64, deliveries: Int) async throws -> WebhookDetail
    func addWebhook(url: String, secret: String, kinds: String?, after: Int64?) async throws -> WebhookRow
    func removeWebhook(_ id: Int64) async throws -> WebhookRow
    func enableWebhook(_ id: Int64) async throws -> WebhookRow
}

extension LocalFleet {
    public func webhooks() async throws -> [WebhookRow] { try await ops.webhooks().map(WebhookRow.init) }

    public func webhook(_ id: Int64, deliveries: Int) async throws -> WebhookDetail {
        let (webhook, log) = try await ops.webhook(id, deliveries: deliveries)
        return WebhookDetail(webhook: WebhookRow(webhook), deliveries: log.map(WebhookDetail.Delivery.init))
    }

    public func addWebhook(url: String, secret: String, kinds: String?, after: Int64?) async throws -> WebhookRow {
        WebhookRow(try await ops.addWebhook(url: url, secret: secret, kinds: kinds, after: after))
    }

    public func removeWebhook(_ id: Int64) async throws -> WebhookRow { WebhookRow(try await ops.removeWebhook(id)) }
    public func enableWebhook(_ id: Int64) async throws -> WebhookRow { WebhookRow(try await ops.enableWebhook(id)) }
}

extension RemoteFleet {
    public func webhooks() async throws -> [WebhookRow] {
        try convert(try await call { try await client.listWebhooks().ok.body.json.webhooks })
    }

    public func webhook(_ id: Int64, deliveries: Int) async throws -> WebhookDetail {
        try convert(try await call { try await client.getWebhook(path: .init(id: id), query: .init(limit: deliveries)).ok.body.json })
    }

    public func addWebhook(url: String, secret: String, kinds: String?, after: Int64?) async throws -> WebhookRow {
        // Checked here as locally (`invalid_kinds` names the kinds), then sent as the document's enum.
        let list = try kinds.map { try EventKind.list($0).map(\.rawValue).sorted().compactMap(Components.Schemas.EventKind.init(rawValue:)) }
        let body = Components.Schemas.WebhookCreate(url: url, secret: secret, kinds: list, after: after)
        return try convert(try await call { try await client.addWebhook(body: .json(body)).created.body.json })
    }

    /// The API answers 204: the webhook is read first, for what the command prints.
    public func removeWebhook(_ id: Int64) async throws -> WebhookRow {
        let row = try await webhook(id, deliveries: 1).webhook
        _ = try await call { try await client.removeWebhook(path: .init(id: id)).noContent }
        return row
    }

    public func enableWebhook(_ id: Int64) async throws -> WebhookRow {
        try convert(try await call { try await client.enableWebhook(path: .init(id: id)).ok.body.json })
    }
}
