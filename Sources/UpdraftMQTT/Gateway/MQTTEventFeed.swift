import Logging
import Mosquitto
import Synchronization
import UpdraftCore

/// Publishes the event log on the events topic at QoS 1, at least once and in sequence
/// order, from a position saved in the store: the last sequence the broker acknowledged.
/// After a reconnect libmosquitto re-sends what was in flight; after a restart the feed
/// starts again after the saved position, so events committed while the gateway was
/// down (by the CLI) or not yet acknowledged when it stopped are published then.
///
/// Events this process commits are handed over by ``committed(_:)`` and published without
/// reading them back; the store is read only for what other processes wrote or what the
/// in-memory buffer dropped. The order logic is ``EventFeedPosition``.
public final class MQTTEventFeed: Sendable {
    /// The feed's name in the store's event cursors.
    public static let cursorName = "mqtt.events"
    /// Events awaiting acknowledgement whose commit time is kept, at most.
    static let timedLimit = 65_536

    public struct Settings: Sendable {
        /// Publishes awaiting PUBACK at most.
        public var window: Int = 64
        /// How often to look for events other processes wrote, when idle.
        public var pollInterval: Duration = .milliseconds(20)
        /// Saves the position at most this often while publishing (and when idle).
        public var saveInterval: Duration = .milliseconds(250)
        public init() {}
    }

    private let client: MosquittoClient
    private let topic: String
    private let store: any StatusStore
    private let settings: Settings
    private let logger: Logger
    private let position: Mutex<EventFeedPosition?> = Mutex(nil)
    private let receipts = Mutex<[(sequence: Int64, receipt: PublishReceipt)]>([])
    private let savedPosition = Atomic<Int64>(-1)
    /// When each event handed over by ``committed(_:)`` was committed, until its publish is acknowledged.
    private let commitTimes = Mutex<[Int64: ContinuousClock.Instant]>([:])
    private let published: @Sendable (_ lag: Duration) -> Void

    /// - Parameter published: called with each event's lag from ``committed(_:)`` to the
    ///   broker's acknowledgement of its publish (events read from the store, which other
    ///   processes committed, are not timed).
    public init(
        client: MosquittoClient, topic: String, store: any StatusStore, settings: Settings = .init(), logger: Logger,
        published: @escaping @Sendable (_ lag: Duration) -> Void = { _ in }
    ) {
        self.published = published
        self.client = client
        self.topic = topic
        self.store = store
        self.settings = settings
        self.logger = logger
    }

    /// Events this process just committed, with their sequences (what the commit returned).
    public func committed(_ events: [UpdraftEvent]) {
        guard !events.isEmpty else { return }
        let now = ContinuousClock.now
        commitTimes.withLock { times in
            if times.count >= Self.timedLimit {
                // Timed events the feed published before they were handed over: never acknowledged here.
                let acknowledged = position.withLock { $0?.acknowledged } ?? 0
                times = times.filter { $0.key > acknowledged }
            }
            guard times.count < Self.timedLimit else { return }
            for event in events { times[event.sequence] = now }
        }
        position.withLock { $0?.committed(events) }
    }

    /// The last sequence the broker acknowledged (nil before ``run()`` loaded it).
    public var acknowledged: Int64? { position.withLock { $0?.acknowledged } }

    /// Publishes until the task is cancelled. A store that cannot be read delays the
    /// feed (retried every second), it does not stop the gateway.
    public func run() async throws {
        while true {
            do {
                try await start()
                break
            } catch is CancellationError {
                return
            } catch {
                logger.error("event feed cannot read its position; will retry", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
        await pump(drain: false)
    }

    /// After ``run()`` ended: publishes what is left (the last flush's events), for at
    /// most `timeout`, and saves the position. Run it outside the cancelled task.
    public func finish(within timeout: Duration) async {
        guard position.withLock({ $0 != nil }) else { return }
        // Receipts of the cancelled run may never complete for us: publish them again
        // (a duplicate at worst, which readers drop by seq).
        position.withLock { $0?.rewind() }
        receipts.withLock { $0.removeAll() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.pump(drain: true) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        await save(force: true)
    }

    private func start() async throws {
        let start = try await store.eventCursor(Self.cursorName) ?? 0
        savedPosition.store(start, ordering: .relaxed)
        position.withLock { $0 = EventFeedPosition(acknowledged: start, window: settings.window) }
        logger.info("event feed starts", metadata: ["events.after": "\(start)", "mqtt.topic": "\(topic)"])
    }

    /// The loop: send what is due, await the oldest acknowledgement, look for new events.
    /// Draining, it returns once everything the store holds was acknowledged.
    private func pump(drain: Bool) async {
        var storeLast = (try? await store.lastEventSequence()) ?? 0
        var lastSave = ContinuousClock.now
        while !Task.isCancelled {
            switch position.withLock({ $0!.next(storeLast: storeLast) }) {
            case .send(let events):
                publish(events)
            case .read(let after, let limit):
                do {
                    let events = try await store.events(after: after, limit: limit)
                    if events.isEmpty {
                        storeLast = after
                        try? await Task.sleep(for: settings.pollInterval)
                    } else {
                        publish(events)
                    }
                } catch {
                    logger.warning("event feed cannot read the store; will retry", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                }
            case .wait:
                if let oldest = receipts.withLock({ $0.first }) {
                    do {
                        try await oldest.receipt.acknowledged()
                        receipts.withLock { _ = $0.removeFirst() }
                        if let at = commitTimes.withLock({ $0.removeValue(forKey: oldest.sequence) }) { published(.now - at) }
                        position.withLock { _ = $0!.acknowledgedOldest() }
                    } catch is CancellationError {
                        return
                    } catch {
                        // The client gave up on its connection: publish again from the
                        // acknowledged position once it is back.
                        logger.warning("event publish failed; will publish again", metadata: ["error": "\(error)"])
                        receipts.withLock { $0.removeAll() }
                        position.withLock { $0!.rewind() }
                        try? await Task.sleep(for: .seconds(1))
                    }
                    if ContinuousClock.now - lastSave >= settings.saveInterval {
                        await save(force: false)
                        lastSave = ContinuousClock.now
                    }
                } else {
                    await save(force: false)
                    lastSave = ContinuousClock.now
                    if drain, position.withLock({ $0!.acknowledged }) >= storeLast {
                        storeLast = (try? await store.lastEventSequence()) ?? storeLast
                        if position.withLock({ $0!.acknowledged }) >= storeLast { return }
                        continue
                    }
                    try? await Task.sleep(for: settings.pollInterval)
                    storeLast = (try? await store.lastEventSequence()) ?? storeLast
                }
            }
        }
    }

    private func publish(_ events: [UpdraftEvent]) {
        var handed: [UpdraftEvent] = []
        position.withLock { position in
            var next = position!.sent + 1
            for event in events where event.sequence == next && handed.count < position!.window - position!.inFlightCount {
                let receipt = client.enqueuePublish(topic: topic, payload: Array(event.jsonLine().utf8), qos: .atLeastOnce)
                receipts.withLock { $0.append((event.sequence, receipt)) }
                handed.append(event)
                next += 1
            }
            position!.sending(handed)
        }
    }

    /// Saves the acknowledged position when it moved. A failed save is retried later: the
    /// position in the store only lags, which means duplicates after a restart, not loss.
    private func save(force: Bool) async {
        guard let acknowledged = position.withLock({ $0?.acknowledged }) else { return }
        guard acknowledged > savedPosition.load(ordering: .relaxed) else { return }
        do {
            try await store.saveEventCursor(Self.cursorName, acknowledged)
            savedPosition.store(acknowledged, ordering: .relaxed)
        } catch {
            if force { logger.warning("event feed position not saved", metadata: ["error": "\(error)"]) }
        }
    }
}
