import Foundation
import GRDB
import UpdraftCore

/// Webhooks and their delivery log (tables `webhooks`, `webhook_deliveries`).
extension SQLiteStatusStore {
    private static let webhookColumns = "id, url, secret, kinds, cursor, created_at, failing_since, disabled_at"
    private static let deliveryColumns = "webhook_id, time, first_seq, last_seq, count, attempt, status, error, milliseconds"
    /// Delivery log rows kept per webhook.
    static let deliveriesKept = 100

    public func addWebhook(url: String, secret: String, kinds: Set<EventKind>, after: Int64?, at date: Date) async throws -> Webhook {
        let kindsJSON = Self.kindsJSON(kinds)
        return try await write { db in
            let last = try Int64.fetchOne(db, sql: "SELECT coalesce(max(seq), 0) FROM events") ?? 0
            let cursor = min(max(after ?? last, 0), last)
            try db.execute(
                sql: "INSERT INTO webhooks (url, secret, kinds, cursor, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [url, secret, kindsJSON, cursor, date.storeSeconds])
            return Webhook(id: db.lastInsertedRowID, url: url, secret: secret, kinds: kinds, cursor: cursor, createdAt: date)
        }
    }

    public func webhooks() async throws -> [Webhook] {
        try await read { db in try Row.fetchAll(db, sql: "SELECT \(Self.webhookColumns) FROM webhooks ORDER BY id").map(Self.webhook) }
    }

    public func removeWebhook(_ id: Int64) async throws -> Webhook {
        try await write { db in
            let webhook = try Self.webhook(id, db)
            try db.execute(sql: "DELETE FROM webhook_deliveries WHERE webhook_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM webhooks WHERE id = ?", arguments: [id])
            return webhook
        }
    }

    public func recordWebhookDelivery(_ delivery: WebhookDelivery, webhook: Webhook, event: UpdraftEvent?) async throws {
        try await write { db in
            _ = try Self.webhook(webhook.id, db)
            try db.execute(
                sql: """
                    UPDATE webhooks SET cursor = max(cursor, ?), failing_since = ?, disabled_at = coalesce(disabled_at, ?) WHERE id = ?
                    """,
                arguments: [webhook.cursor, webhook.failingSince?.storeSeconds, webhook.disabledAt?.storeSeconds, webhook.id])
            try db.execute(
                sql: "INSERT INTO webhook_deliveries (\(Self.deliveryColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [
                    delivery.webhookID, delivery.time.storeSeconds, delivery.firstSeq, delivery.lastSeq, delivery.count,
                    delivery.attempt, delivery.status, delivery.error, delivery.milliseconds,
                ])
            try db.execute(
                sql: """
                    DELETE FROM webhook_deliveries WHERE webhook_id = ? AND id NOT IN
                    (SELECT id FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?)
                    """,
                arguments: [webhook.id, webhook.id, Self.deliveriesKept])
            if let event { _ = try Rows.append([event], db) }
        }
    }

    public func enableWebhook(_ id: Int64, at date: Date, actor: String?) async throws -> Webhook {
        try await write { db in
            var webhook = try Self.webhook(id, db)
            try db.execute(sql: "UPDATE webhooks SET failing_since = NULL, disabled_at = NULL WHERE id = ?", arguments: [id])
            _ = try Rows.append(
                [UpdraftEvent(kind: .webhookEnabled, time: date, detail: "webhook \(id) (\(webhook.url)) resumes after seq \(webhook.cursor)", actor: actor)], db)
            (webhook.failingSince, webhook.disabledAt) = (nil, nil)
            return webhook
        }
    }

    public func webhookDeliveries(_ id: Int64, limit: Int) async throws -> [WebhookDelivery] {
        try await read { db in
            try Row.fetchAll(
                db, sql: "SELECT \(Self.deliveryColumns) FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?",
                arguments: [id, max(0, limit)]
            ).map { row in
                WebhookDelivery(
                    webhookID: try row.int64("webhook_id"), time: try row.date("time"), firstSeq: try row.int64("first_seq"),
                    lastSeq: try row.int64("last_seq"), count: try row.decode(Int.self, forColumn: "count"),
                    attempt: try row.decode(Int.self, forColumn: "attempt"), status: try row.decode(Int?.self, forColumn: "status"),
                    error: try row.optionalText("error"), milliseconds: try row.decode(Int.self, forColumn: "milliseconds"))
            }
        }
    }

    private static func webhook(_ id: Int64, _ db: Database) throws -> Webhook {
        guard let row = try Row.fetchOne(db, sql: "SELECT \(webhookColumns) FROM webhooks WHERE id = ?", arguments: [id]) else {
            throw UpdraftError.webhookNotFound(id)
        }
        return try webhook(row)
    }

    private static func webhook(_ row: Row) throws -> Webhook {
        let kindsText = try row.text("kinds")
        guard let names = try? JSONDecoder().decode([String].self, from: Data(kindsText.utf8)) else {
            throw StoreErrors.corrupt("webhook kinds", kindsText)
        }
        return Webhook(
            id: try row.int64("id"), url: try row.text("url"), secret: try row.text("secret"),
            kinds: Set(names.compactMap(EventKind.init(rawValue:))), cursor: try row.int64("cursor"), createdAt: try row.date("created_at"),
            failingSince: try row.optionalDate("failing_since"), disabledAt: try row.optionalDate("disabled_at"))
    }

    static func kindsJSON(_ kinds: Set<EventKind>) -> String {
        String(decoding: (try? JSONEncoder().encode(kinds.map(\.rawValue).sorted())) ?? Data("[]".utf8), as: UTF8.self)
    }
}
