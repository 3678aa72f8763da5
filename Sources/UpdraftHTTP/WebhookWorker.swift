import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import UpdraftCore

/// Delivers to one webhook, in sequence order, one request at a time (see
/// ``WebhookDeliveryService``). Ends when the webhook is disabled or removed, or when cancelled.
struct WebhookWorker: Sendable {
    var webhook: Webhook
    let client: HTTPClient
    let service: WebhookDeliveryService

    func run() async {
        var webhook = self.webhook
        // Past events of kinds it does not want: skipped in memory, saved with the next delivery.
        var position = webhook.cursor
        while !Task.isCancelled {
            do {
                let generation = service.signal.generation
                let page = try await service.store.events(after: position, limit: service.settings.batchSize)
                guard let last = page.last else {
                    await service.signal.wait(after: generation, timeout: service.refresh)
                    continue
                }
                let wanted = page.filter(webhook.wants)
                guard !wanted.isEmpty else {
                    position = last.sequence
                    continue
                }
                guard let delivered = try await deliver(wanted, from: position + 1, through: last.sequence, &webhook) else { return }
                position = delivered
            } catch is CancellationError {
                return
            } catch let error as UpdraftError where error.code == "webhook_not_found" {
                return
            } catch {
                service.logger.error("webhook delivery failed to read or write the store; will retry", metadata: ["webhook.id": "\(webhook.id)", "error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Posts one batch until it is accepted (returns the new cursor) or the webhook is
    /// disabled (returns nil). Each attempt is logged in the store.
    private func deliver(_ events: [UpdraftEvent], from first: Int64, through last: Int64, _ webhook: inout Webhook) async throws -> Int64? {
        let body = Array(("{\"events\":[" + events.map { $0.jsonLine() }.joined(separator: ",") + "]}").utf8)
        var attempt = 1
        while true {
            try Task.checkCancellation()
            let started = ContinuousClock.now
            let (status, error) = await post(body, seqs: "\(first)-\(last)", attempt: attempt, to: webhook)
            // A batch the receiver accepted is recorded even when the gateway is stopping, so a
            // graceful stop does not post it again; a failed one is left to the next start.
            if error != nil { try Task.checkCancellation() }
            let elapsed = ContinuousClock.now - started
            service.instruments?.webhookAttempt(webhook.id, failed: error != nil, duration: elapsed)
            let delivery = WebhookDelivery(
                webhookID: webhook.id, time: Date(), firstSeq: first, lastSeq: last, count: events.count, attempt: attempt, status: status,
                error: error, milliseconds: Int(elapsed / .milliseconds(1)))
            let (recorded, event) = webhook.recording(delivery, disableAfter: service.settings.disableAfter)
            let store = service.store
            try await Task { try await store.recordWebhookDelivery(delivery, webhook: recorded, event: event) }.value
            webhook = recorded
            if event != nil { service.signal.notify() }
            if delivery.succeeded { return last }
            if webhook.isDisabled {
                service.logger.warning("webhook disabled after failing", metadata: ["webhook.id": "\(webhook.id)", "error": "\(error ?? "-")"])
                return nil
            }
            let wait = service.settings.backoff.delay(after: attempt, unit: Double.random(in: 0...1))
            service.logger.info(
                "webhook delivery failed; retrying", metadata: ["webhook.id": "\(webhook.id)", "attempt": "\(attempt)", "retry.in": "\(wait)", "error": "\(error ?? "-")"])
            try await Task.sleep(for: wait)
            attempt += 1
        }
    }

    /// One request: the status, and why it failed (`nil` when the answer was 2xx). Bounded
    /// by the timeout from connect to the end of the answer (read, at most 64 KiB).
    private func post(_ body: [UInt8], seqs: String, attempt: Int, to webhook: Webhook) async -> (Int?, String?) {
        var request = HTTPClientRequest(url: webhook.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "updraft-webhook")
        request.headers.add(name: "Updraft-Signature", value: Webhook.signature(of: body, secret: webhook.secret))
        request.headers.add(name: "Updraft-Seq", value: seqs)
        request.headers.add(name: "Updraft-Webhook", value: "\(webhook.id)")
        request.headers.add(name: "Updraft-Attempt", value: "\(attempt)")
        request.body = .bytes(ByteBuffer(bytes: body))
        let timeout = service.settings.timeout
        let client = self.client
        let prepared = request
        do {
            let status = try await withThrowingTaskGroup(of: Int?.self) { group in
                group.addTask {
                    let response = try await client.execute(prepared, timeout: .init(timeout))
                    _ = try await response.body.collect(upTo: 64 << 10)
                    return Int(response.status.code)
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            guard let status else { return (nil, "no answer within \(timeout)") }
            return (200..<300).contains(status) ? (status, nil) : (status, "HTTP \(status)")
        } catch is CancellationError {
            return (nil, "canceled")
        } catch {
            return (nil, String("\(error)".prefix(300)))
        }
    }
}
