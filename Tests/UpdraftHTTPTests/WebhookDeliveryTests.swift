import Foundation
import Hummingbird
import Logging
import LoopbackPorts
import Testing
import UpdraftCore
import UpdraftStore
import UpdraftTestSupport

@testable import UpdraftHTTP

/// The webhook delivery service against real receivers on free ports and a SQLite store:
/// order, signatures, retries, the durable cursor, disabling, and endpoints that misbehave.
@Suite(.timeLimit(.minutes(3))) struct WebhookDeliveryTests {
    static let secret = "a-webhook-secret-of-some-length"

    static func settings(_ tune: (inout WebhookSettings) -> Void = { _ in }) -> WebhookSettings {
        var settings = WebhookSettings()
        settings.backoffInitial = .milliseconds(20)
        settings.backoffMax = .milliseconds(200)
        // Generous: an answer slower than this is a failed attempt and its batch comes again
        // (at least once), which would break the tests' exactly-once counts on a loaded machine.
        settings.timeout = .seconds(30)
        settings.batchSize = 40
        tune(&settings)
        return settings
    }

    /// A delivery service over `store` as `updraft serve` runs it; `stop` cancels it as graceful shutdown does.
    struct Running {
        let task: Task<Void, any Error>
        func stop() async {
            task.cancel()
            _ = await task.result
        }
    }

    static func start(_ store: any StatusStore, _ signal: EventSignal, _ settings: WebhookSettings) -> Running {
        var service = WebhookDeliveryService(store: store, signal: signal, settings: settings, logger: APIServer.logger)
        service.refresh = .milliseconds(100)
        let running = service
        return Running(task: Task { try await running.run() })
    }

    static func events(_ count: Int) -> [UpdraftEvent] {
        (0..<count).map { i in UpdraftEvent(kind: i % 5 == 0 ? .deviceOnline : .jobTransition, time: Date(), deviceID: try! DeviceID(validating: "d-\(i % 7)")) }
    }

    static func withStore(_ body: (String, SQLiteStatusStore) async throws -> Void) async throws {
        try await withTemporaryPath(prefix: "updraft-webhook") { directory in
            let path = directory + "/updraft.sqlite"
            let store = try SQLiteStatusStore(path: path, logger: APIServer.logger)
            try await body(path, store)
        }
    }

    /// A receiver answering `answer`, `events` in the store, and a webhook for `kinds` to it from seq 0.
    static func withReceiver(
        events: Int, kinds: Set<EventKind> = [], answer: @escaping @Sendable (Int) -> HTTPResponse.Status,
        _ body: (String, SQLiteStatusStore, WebhookReceiver, Webhook) async throws -> Void
    ) async throws {
        try await withStore { path, store in
            let receiver = WebhookReceiver(answer: answer)
            try await receiver.start()
            try await store.commit(StoreBatch(events: Self.events(events)))
            let hook = try await store.addWebhook(url: receiver.url, secret: Self.secret, kinds: kinds, after: 0, at: Date())
            do {
                try await body(path, store, receiver, hook)
            } catch {
                await receiver.stop()
                throw error
            }
            await receiver.stop()
        }
    }

    @Test func aReceiverFailingFirstGetsEveryEventInOrderSignedAndTheCursorSurvivesARestart() async throws {
        try await Self.withReceiver(events: 100, answer: { $0 <= 3 ? .internalServerError : .noContent }) { path, store, receiver, hook in
            let signal = EventSignal()
            var service = Self.start(store, signal, Self.settings())
            do {
                try await eventually(timeout: .seconds(60), "100 events accepted") { receiver.accepted.flatMap(\.seqs).count == 100 }
            } catch {
                let log = (try? await store.webhookDeliveries(hook.id, limit: 100)) ?? []
                Issue.record("received: \(receiver.received.map { "\($0.seq ?? "-")#\($0.attempt ?? "-")=\($0.status)" }); log: \(log.map { "\($0.firstSeq)-\($0.lastSeq) \($0.status ?? 0) \($0.error ?? "")" })")
                throw error
            }
            // Live events, woken by the signal.
            try await store.commit(StoreBatch(events: Self.events(20)))
            signal.notify()
            try await eventually(timeout: .seconds(60), "120 events accepted") { receiver.accepted.flatMap(\.seqs).count == 120 }
            // The receiver counts a batch before its answer reaches the gateway: stop once the cursor is saved.
            try await eventually(timeout: .seconds(60), "the cursor saved") { try await store.webhooks().first?.cursor == 120 }
            await service.stop()
            #expect(receiver.accepted.flatMap(\.seqs) == Array(1...120), "every event once, in order")
            #expect(receiver.received.prefix(3).allSatisfy { $0.status == 500 })
            #expect(receiver.received.prefix(4).map(\.attempt) == ["1", "2", "3", "4"], "the same batch retried")
            #expect(Set(receiver.received.prefix(4).map(\.body)).count == 1)
            #expect(receiver.received.allSatisfy { WebhookReceiver.verify($0, secret: Self.secret) }, "every signature verifies")
            #expect(!receiver.received.contains { WebhookReceiver.verify($0, secret: "another-secret-entirely") })
            #expect(receiver.accepted.first?.seq == "1-40")
            let log = try await store.webhookDeliveries(hook.id, limit: 100)
            #expect(log.filter { !$0.succeeded }.count == 3)
            #expect(log.first?.succeeded == true && log.first?.lastSeq == 120)
            #expect(try await store.webhooks().first?.cursor == 120)
            #expect(try await store.webhooks().first?.failingSince == nil)

            // A restart (another store handle, as a new process opens it): from the cursor on.
            let reopened = try SQLiteStatusStore(path: path, logger: APIServer.logger)
            try await reopened.commit(StoreBatch(events: Self.events(5)))
            service = Self.start(reopened, EventSignal(), Self.settings())
            try await eventually(timeout: .seconds(60), "the events after the restart") { receiver.accepted.flatMap(\.seqs).count == 125 }
            try await Task.sleep(for: .milliseconds(300))
            await service.stop()
            #expect(receiver.accepted.flatMap(\.seqs) == Array(1...125), "nothing again, nothing missing")
        }
    }

    @Test func onlyTheKindsItWantsAndSkippedOnesDoNotHoldItBack() async throws {
        try await Self.withReceiver(events: 90, kinds: [.deviceOnline], answer: { _ in .ok }) { _, store, receiver, _ in
            let service = Self.start(store, EventSignal(), Self.settings())
            try await eventually(timeout: .seconds(60), "the device.online events") { receiver.accepted.flatMap(\.seqs).count == 18 }
            await service.stop()
            #expect(Set(receiver.accepted.flatMap(\.kinds)) == ["device.online"])
            #expect(receiver.accepted.flatMap(\.seqs) == stride(from: 1, through: 90, by: 5).map { Int64($0) })
        }
    }

    @Test func aWebhookFailingForDisableAfterIsDisabledWithAnEventAndResumesWhenEnabled() async throws {
        try await Self.withReceiver(events: 3, kinds: [.deviceOnline, .jobTransition], answer: { _ in .badGateway }) { _, store, receiver, hook in
            let signal = EventSignal()
            let service = Self.start(store, signal, Self.settings { $0.disableAfter = .seconds(1) })
            let started = ContinuousClock.now
            try await eventually(timeout: .seconds(60), "the webhook disabled") { try await store.webhooks().first?.isDisabled == true }
            #expect(ContinuousClock.now - started >= .seconds(1))
            let disabled = try await store.events(after: 0, limit: 100).filter { $0.kind == .webhookDisabled }
            #expect(disabled.count == 1)
            #expect(disabled.first?.detail?.contains("webhook \(hook.id)") == true)
            // Disabled: no more attempts.
            let attempts = receiver.received.count
            try await Task.sleep(for: .milliseconds(600))
            #expect(receiver.received.count == attempts)
            // The backend is fixed and an operator re-enables it: it resumes where it was.
            receiver.setAnswer { _ in .ok }
            _ = try await store.enableWebhook(hook.id, at: Date(), actor: "cli:test")
            try await eventually(timeout: .seconds(60), "delivered after enable") { receiver.accepted.flatMap(\.seqs) == [1, 2, 3] }
            await service.stop()
            #expect(try await store.webhooks().first?.isDisabled == false)
        }
    }

    @Test func anEndpointThatNeverAnswersOrAnswersGarbageIsAFailureBoundedByTheTimeout() async throws {
        try await Self.withStore { _, store in
            let silent = try RawTCPServer(.silent)
            let garbage = try RawTCPServer(.garbage)
            defer {
                silent.stop()
                garbage.stop()
            }
            try await store.commit(StoreBatch(events: Self.events(2)))
            let quiet = try await store.addWebhook(url: silent.url, secret: Self.secret, kinds: [], after: 0, at: Date())
            let junk = try await store.addWebhook(url: garbage.url, secret: Self.secret, kinds: [], after: 0, at: Date())
            let unreachable = try await store.addWebhook(url: "http://127.0.0.1:\(PortProbe.freePort())/x", secret: Self.secret, kinds: [], after: 0, at: Date())
            let service = Self.start(store, EventSignal(), Self.settings { $0.timeout = .milliseconds(300) })
            try await eventually(timeout: .seconds(60), "failures logged for each") {
                for id in [quiet.id, junk.id, unreachable.id] where try await store.webhookDeliveries(id, limit: 5).count < 2 { return false }
                return true
            }
            await service.stop()
            let timedOut = try await store.webhookDeliveries(quiet.id, limit: 5)
            #expect(timedOut.allSatisfy { !$0.succeeded && $0.status == nil })
            #expect(timedOut.allSatisfy { $0.milliseconds < 2000 }, "\(timedOut.map(\.milliseconds))")
            #expect(try await store.webhookDeliveries(junk.id, limit: 5).allSatisfy { !$0.succeeded })
            #expect(try await store.webhookDeliveries(unreachable.id, limit: 5).allSatisfy { !$0.succeeded && $0.status == nil })
            #expect(try await store.webhooks().allSatisfy { $0.cursor == 0 && $0.failingSince != nil })
        }
    }
}
