import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

/// `updraft webhook`: backends that get the event log posted to them (README "Events for backends").
struct WebhookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook", abstract: "Webhooks: the event log posted to a backend's URL, signed, in order (add, list, show, remove, enable).",
        subcommands: [Add.self, List.self, Show.self, Remove.self, Enable.self])

    struct Add: FleetCommand {
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

        func run(_ hooks: any FleetClient) async throws {
            let webhook = try await hooks.addWebhook(url: url, secret: secret, kinds: kinds, after: after)
            if json {
                print(try jsonText(webhook))
            } else {
                print("Webhook \(webhook.id) added: \(webhook.url), events after seq \(webhook.cursor).")
            }
        }
    }

    struct List: FleetCommand {
        static let configuration = CommandConfiguration(abstract: "List webhooks: id, state, cursor, URL, kinds (never secrets).")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print a JSON array of webhooks.") var json = false

        func run(_ hooks: any FleetClient) async throws {
            let rows = try await hooks.webhooks()
            if json {
                print(try jsonText(rows))
                return
            }
            if rows.isEmpty { print("No webhooks. Add one with `updraft webhook add URL --secret S`.") }
            for row in rows { print("\(row.id)\t\(row.state)\tafter \(row.cursor)\t\(row.url)\t\(row.kinds.isEmpty ? "all" : row.kinds.joined(separator: ","))") }
        }
    }

    struct Show: FleetCommand {
        static let configuration = CommandConfiguration(abstract: "A webhook and its recent deliveries, newest first.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The webhook's id.") var id: Int64
        @Option(help: "How many deliveries (1-100).") var limit = 20
        @Flag(help: "Print a JSON object {webhook, deliveries}.") var json = false

        func run(_ hooks: any FleetClient) async throws {
            let detail = try await hooks.webhook(id, deliveries: min(max(limit, 1), 100))
            let row = detail.webhook
            if json { return print(try jsonText(detail)) }
            print("Webhook \(row.id) \(row.state): \(row.url), kinds \(row.kinds.isEmpty ? "all" : row.kinds.joined(separator: ",")), after seq \(row.cursor)")
            if let since = row.failing_since { print("Failing since \(since)") }
            for d in detail.deliveries {
                print("\(d.time)\tseq \(d.first_seq)-\(d.last_seq)\tattempt \(d.attempt)\t\(d.error ?? "ok \(d.status ?? 0)")\t\(d.milliseconds) ms")
            }
        }
    }

    struct Remove: FleetCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a webhook and its delivery log (a running gateway stops posting within a second).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The webhook's id.") var id: Int64

        func run(_ hooks: any FleetClient) async throws {
            let webhook = try await hooks.removeWebhook(id)
            print("Webhook \(webhook.id) removed (\(webhook.url)).")
        }
    }

    struct Enable: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-enable disabled webhooks: each resumes at its cursor, nothing skipped (a running gateway within a second).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The webhooks' ids.") var ids: [Int64]

        func validate() throws {
            guard !ids.isEmpty else { throw ValidationError("Name at least one webhook id (see `updraft webhook list`).") }
        }

        func run(_ hooks: any FleetClient) async throws {
            for id in ids {
                let webhook = try await hooks.enableWebhook(id)
                print("Webhook \(webhook.id) enabled: resumes after seq \(webhook.cursor).")
            }
        }
    }
}
