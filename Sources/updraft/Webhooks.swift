import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

/// `updraft webhook`: backends that get the event log posted to them (README "Events for backends").
struct WebhookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook", abstract: "Webhooks: the event log posted to a backend's URL, signed, in order (add, list, show, remove, enable).",
        subcommands: [Add.self, List.self, Show.self, Remove.self, Enable.self])

    struct Add: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Post events to URL from now on (a running gateway starts within a second).",
            discussion: """
                Each request is a POST of {"events": [...]} (up to webhooks.batch_size events, in \
                seq order, one request in flight) with 'Updraft-Signature: sha256=<hex HMAC-SHA256 \
                of the body keyed with the secret>' and 'Updraft-Seq: <first>-<last>'. A 2xx answer \
                moves the webhook's cursor; anything else is retried with backoff, and after \
                webhooks.disable_after of failures the webhook is disabled (`webhook enable`).
                """)
        static var storeAccess: UpdraftStoreFactory.Access { .create }
        @OptionGroup var global: GlobalOptions
        @Argument(help: "http:// or https:// URL.") var url: String
        @Option(help: "The HMAC key (16-256 characters); not shown again by list or show.") var secret: String
        @Option(help: "Only these event kinds, comma-separated (default: all).") var kinds: String?
        @Option(help: "Start after this sequence number (0: the whole log; default: the log's end).") var after: Int64?
        @Flag(help: "Print a JSON object of the webhook (without its secret).") var json = false

        func run(_ ops: Operations) async throws {
            let webhook = try await ops.addWebhook(url: url, secret: secret, kinds: kinds, after: after)
            if json {
                print(try jsonText(WebhookRow(webhook)))
            } else {
                print("Webhook \(webhook.id) added: \(webhook.url), events after seq \(webhook.cursor).")
            }
        }
    }

    struct List: OperationsCommand {
        static let configuration = CommandConfiguration(abstract: "List webhooks: id, state, cursor, URL, kinds (never secrets).")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print a JSON array of webhooks.") var json = false

        func run(_ ops: Operations) async throws {
            let rows = try await ops.webhooks().map(WebhookRow.init)
            if json {
                print(try jsonText(rows))
                return
            }
            if rows.isEmpty { print("No webhooks. Add one with `updraft webhook add URL --secret S`.") }
            for row in rows { print("\(row.id)\t\(row.state)\tafter \(row.cursor)\t\(row.url)\t\(row.kinds.isEmpty ? "all" : row.kinds.joined(separator: ","))") }
        }
    }

    struct Show: OperationsCommand {
        static let configuration = CommandConfiguration(abstract: "A webhook and its recent deliveries, newest first.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The webhook's id.") var id: Int64
        @Option(help: "How many deliveries (1-100).") var limit = 20
        @Flag(help: "Print a JSON object {webhook, deliveries}.") var json = false

        func run(_ ops: Operations) async throws {
            let (webhook, deliveries) = try await ops.webhook(id, deliveries: min(max(limit, 1), 100))
            let row = WebhookRow(webhook)
            if json {
                print(try jsonText(WebhookShow(webhook: row, deliveries: deliveries.map(DeliveryRow.init))))
                return
            }
            print("Webhook \(row.id) \(row.state): \(row.url), kinds \(row.kinds.isEmpty ? "all" : row.kinds.joined(separator: ",")), after seq \(row.cursor)")
            if let since = row.failing_since { print("Failing since \(since)") }
            for d in deliveries.map(DeliveryRow.init) {
                print("\(d.time)\tseq \(d.first_seq)-\(d.last_seq)\tattempt \(d.attempt)\t\(d.error ?? "ok \(d.status ?? 0)")\t\(d.milliseconds) ms")
            }
        }
    }

    struct Remove: OperationsCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a webhook and its delivery log (a running gateway stops posting within a second).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The webhook's id.") var id: Int64

        func run(_ ops: Operations) async throws {
            let webhook = try await ops.removeWebhook(id)
            print("Webhook \(webhook.id) removed (\(webhook.url)).")
        }
    }

    struct Enable: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-enable disabled webhooks: each resumes at its cursor, nothing skipped (a running gateway within a second).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The webhooks' ids.") var ids: [Int64]

        func validate() throws {
            guard !ids.isEmpty else { throw ValidationError("Name at least one webhook id (see `updraft webhook list`).") }
        }

        func run(_ ops: Operations) async throws {
            for id in ids {
                let webhook = try await ops.enableWebhook(id)
                print("Webhook \(webhook.id) enabled: resumes after seq \(webhook.cursor).")
            }
        }
    }
}

/// A webhook as listed: everything but its secret.
struct WebhookRow: Encodable {
    var id: Int64
    var url: String
    var kinds: [String]
    var cursor: Int64
    var state: String
    var created_at: String
    var failing_since: String?
    var disabled_at: String?

    init(_ webhook: Webhook) {
        (id, url, cursor) = (webhook.id, webhook.url, webhook.cursor)
        kinds = webhook.kinds.map(\.rawValue).sorted()
        state = webhook.isDisabled ? "disabled" : webhook.failingSince != nil ? "failing" : "active"
        created_at = webhook.createdAt.formatted(.iso8601)
        failing_since = webhook.failingSince?.formatted(.iso8601)
        disabled_at = webhook.disabledAt?.formatted(.iso8601)
    }
}

private struct DeliveryRow: Encodable {
    var time: String
    var first_seq: Int64
    var last_seq: Int64
    var count: Int
    var attempt: Int
    var status: Int?
    var error: String?
    var milliseconds: Int

    init(_ d: WebhookDelivery) {
        (time, first_seq, last_seq, count, attempt) = (d.time.formatted(.iso8601), d.firstSeq, d.lastSeq, d.count, d.attempt)
        (status, error, milliseconds) = (d.status, d.error, d.milliseconds)
    }
}

private struct WebhookShow: Encodable {
    var webhook: WebhookRow
    var deliveries: [DeliveryRow]
}
