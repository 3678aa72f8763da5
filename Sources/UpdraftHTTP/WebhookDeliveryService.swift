import AsyncHTTPClient
import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import Synchronization
public import ServiceLifecycle
public import UpdraftCore

/// Posts the event log to every enabled webhook, as a Service of the gateway's group.
///
/// One worker per webhook, one request in flight each: a batch of up to
/// ``WebhookSettings/batchSize`` events (those of its kinds) after its durable cursor, as
/// `{"events": [...]}` with `Updraft-Signature: sha256=<HMAC-SHA256 of the body>` and
/// `Updraft-Seq: <first>-<last>`. A 2xx answer moves the cursor (in the store, with the
/// delivery log row); anything else is retried with capped, jittered exponential backoff,
/// the same batch again, until it succeeds or the webhook has failed for
/// ``WebhookSettings/disableAfter`` and is disabled. Delivery is at least once: a gateway
/// stopped between the answer and the store write posts that batch again (receivers drop
/// sequence numbers they have).
public struct WebhookDeliveryService: Service {
    let store: any StatusStore
    let signal: EventSignal
    let settings: WebhookSettings
    let logger: Logger
    /// How often the list of webhooks is re-read (added, removed, re-enabled ones).
    var refresh: Duration = .seconds(1)
    /// Where each attempt's outcome and duration are recorded (`/metrics`); `nil`: nowhere.
    public var instruments: GatewayInstruments?

    public init(store: any StatusStore, signal: EventSignal, settings: WebhookSettings, logger: Logger) {
        (self.store, self.signal, self.settings, self.logger) = (store, signal, settings, logger)
    }

    public func run() async throws {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .init(settings.timeout), read: .init(settings.timeout))
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        await supervise(client)
        try? await client.shutdown()
    }

    /// Keeps one worker running per enabled webhook until cancelled (graceful shutdown).
    private func supervise(_ client: HTTPClient) async {
        var workers: [Int64: Task<Void, Never>] = [:]
        let ended = EndedWorkers()
        while !Task.isCancelled {
            do {
                let hooks = try await store.webhooks()
                let wanted = Set(hooks.filter { !$0.isDisabled }.map(\.id))
                let finished = ended.take()
                for (id, task) in workers where !wanted.contains(id) || finished.contains(id) {
                    task.cancel()
                    workers[id] = nil
                }
                for hook in hooks where !hook.isDisabled && workers[hook.id] == nil {
                    let worker = WebhookWorker(webhook: hook, client: client, service: self)
                    workers[hook.id] = Task {
                        await worker.run()
                        ended.add(hook.id)
                    }
                }
            } catch is CancellationError {
                break
            } catch {
                logger.error("reading webhooks failed; will retry", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: refresh)
        }
        for task in workers.values { task.cancel() }
        for task in workers.values { await task.value }
    }
}

/// The webhooks whose worker has returned since the supervisor last looked.
private final class EndedWorkers: Sendable {
    private let ids = Mutex<Set<Int64>>([])
    func add(_ id: Int64) { ids.withLock { _ = $0.insert(id) } }
    func take() -> Set<Int64> {
        ids.withLock { ids in
            defer { ids = [] }
            return ids
        }
    }
}
