import Crypto
import Foundation

/// A backend's HTTP endpoint that the gateway posts the event log to, in sequence order,
/// from a durable cursor (README "Events for backends").
public struct Webhook: Sendable, Equatable {
    public var id: Int64
    public var url: String
    /// The HMAC-SHA256 key of the `Updraft-Signature` header. Stored (the gateway signs
    /// with it), shown once by `webhook add`, never by list, show or the API.
    public var secret: String
    /// Only these kinds are posted; empty: every kind.
    public var kinds: Set<EventKind>
    /// The last sequence number the endpoint acknowledged (or skipped as not wanted).
    public var cursor: Int64
    public var createdAt: Date
    /// The first failed attempt of the current run of failures; `nil` after a success.
    public var failingSince: Date?
    /// When it was disabled after `webhooks.disable_after` of failures; `webhook enable` clears it.
    public var disabledAt: Date?

    public init(
        id: Int64, url: String, secret: String, kinds: Set<EventKind>, cursor: Int64, createdAt: Date,
        failingSince: Date? = nil, disabledAt: Date? = nil
    ) {
        (self.id, self.url, self.secret, self.kinds, self.cursor) = (id, url, secret, kinds, cursor)
        (self.createdAt, self.failingSince, self.disabledAt) = (createdAt, failingSince, disabledAt)
    }

    public var isDisabled: Bool { disabledAt != nil }

    public func wants(_ event: UpdraftEvent) -> Bool { kinds.isEmpty || kinds.contains(event.kind) }

    /// This webhook after `delivery`: a success moves the cursor and ends a run of
    /// failures; a failure starts one or, once it has lasted `disableAfter`, disables the
    /// webhook with a `webhook.disabled` event (returned, for the store to append).
    public func recording(_ delivery: WebhookDelivery, disableAfter: Duration) -> (Webhook, UpdraftEvent?) {
        var next = self
        if delivery.succeeded {
            next.cursor = max(cursor, delivery.lastSeq)
            next.failingSince = nil
            return (next, nil)
        }
        let since = failingSince ?? delivery.time
        next.failingSince = since
        let limit = Double(disableAfter.components.seconds) + Double(disableAfter.components.attoseconds) / 1e18
        guard !isDisabled, delivery.time.timeIntervalSince(since) >= limit else { return (next, nil) }
        next.disabledAt = delivery.time
        let event = UpdraftEvent(
            kind: .webhookDisabled, time: delivery.time,
            detail: "webhook \(id) (\(url)) disabled after failing since \(since.formatted(.iso8601)): \(delivery.error ?? "HTTP \(delivery.status ?? 0)"); `updraft webhook enable \(id)` resumes it from seq \(cursor + 1)")
        return (next, event)
    }

    /// Checks what an operator gives: an http(s) URL with a host, and a secret of 16 to 256 characters.
    public static func validate(url: String, secret: String) throws(UpdraftError) {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = parsed.host, !host.isEmpty, url.utf8.count <= 2048
        else {
            throw UpdraftError("invalid_webhook_url", "The webhook URL must be http:// or https:// with a host (at most 2048 bytes), not '\(url.prefix(80))'.")
        }
        // Characters as JSON Schema counts them (code points), like openapi.yaml's bounds.
        guard (16...256).contains(secret.unicodeScalars.count) else {
            throw UpdraftError("invalid_webhook_secret", "The webhook secret must be 16 to 256 characters (use a random one: `openssl rand -hex 32`).")
        }
    }

    /// `sha256=<hex HMAC-SHA256 of body keyed with secret>`: the `Updraft-Signature` header.
    public static func signature(of body: [UInt8], secret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(secret.utf8)))
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }
}

/// One attempt to post events to a webhook: the delivery log row.
public struct WebhookDelivery: Sendable, Equatable {
    public var webhookID: Int64
    public var time: Date
    /// The events posted: sequence numbers `firstSeq...lastSeq` (the wanted ones among them).
    public var firstSeq: Int64
    public var lastSeq: Int64
    public var count: Int
    /// 1 for the first attempt of this batch, then counting retries.
    public var attempt: Int
    /// The HTTP status the endpoint answered; `nil` when it did not answer.
    public var status: Int?
    /// Why it failed; `nil` when the endpoint answered 2xx.
    public var error: String?
    public var milliseconds: Int

    public init(
        webhookID: Int64, time: Date, firstSeq: Int64, lastSeq: Int64, count: Int, attempt: Int, status: Int?, error: String?,
        milliseconds: Int
    ) {
        (self.webhookID, self.time, self.firstSeq, self.lastSeq, self.count) = (webhookID, time, firstSeq, lastSeq, count)
        (self.attempt, self.status, self.error, self.milliseconds) = (attempt, status, error, milliseconds)
    }

    public var succeeded: Bool { error == nil }
}

/// Exponential backoff between attempts: `base * 2^(attempt-1)`, capped at `cap`, with
/// "full jitter" on the upper half (a random delay in [d/2, d]) so that many webhooks
/// failing together do not retry in step.
public struct WebhookBackoff: Sendable, Equatable {
    public var base: Duration
    public var cap: Duration

    public init(base: Duration, cap: Duration) { (self.base, self.cap) = (base, cap) }

    /// The wait after failed attempt number `attempt` (1, 2, ...); `unit` in 0...1 is the random draw.
    public func delay(after attempt: Int, unit: Double) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let full = min(base * (1 << exponent), cap)
        return full / 2 + full / 2 * min(max(unit, 0), 1)
    }
}

extension EventKind {
    /// `job.transition,device.online`: event kinds, comma-separated; empty or `nil`: none given.
    public static func list(_ text: String?) throws(UpdraftError) -> Set<EventKind> {
        guard let text, !text.isEmpty else { return [] }
        var kinds: Set<EventKind> = []
        for name in text.split(separator: ",", omittingEmptySubsequences: false) {
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard let kind = EventKind(rawValue: trimmed) else {
                throw UpdraftError(
                    "invalid_kinds",
                    "Unknown event kind '\(trimmed.prefix(64))'. Use a comma-separated list of: \(allCases.map(\.rawValue).joined(separator: ", ")).")
            }
            kinds.insert(kind)
        }
        return kinds
    }
}
