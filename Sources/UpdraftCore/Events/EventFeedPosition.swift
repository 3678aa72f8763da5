/// Where a publisher of the event log stands. It publishes every event at least once and
/// in sequence order: events are handed out in order from the position after the last one
/// sent, at most `window` unacknowledged at once, and the position only counts an event
/// as done when its publish was acknowledged. After a loss (``rewind()``) or a restart
/// (a new position at the saved `acknowledged`), publishing resumes after the last
/// acknowledged event, so a reader may get an event twice and drops it by `seq`.
///
/// Events come from two places: the ones this process just committed (``committed(_:)``,
/// no read needed) and the store, for what other processes wrote (the CLI) or what fell
/// behind the in-memory buffer. A state machine: the caller performs the ``Step``s.
public struct EventFeedPosition: Sendable, Equatable {
    /// Every event up to this sequence was acknowledged.
    public private(set) var acknowledged: Int64
    /// Every event up to this sequence was handed to the transport.
    public private(set) var sent: Int64
    /// Unacknowledged publishes at most.
    public let window: Int
    /// Events kept from commits at most; beyond it they are read from the store later.
    public let readyLimit: Int
    private var inFlight: [Int64] = []
    /// Committed events not sent yet, ascending; may start after a gap.
    private var ready: [UpdraftEvent] = []

    public enum Step: Sendable, Equatable {
        /// Publish these, in order, then call ``sending(_:)``.
        case send([UpdraftEvent])
        /// Read up to `limit` events after `after` from the store and publish them.
        case read(after: Int64, limit: Int)
        /// Nothing to send now: wait for the oldest acknowledgement, or for new events.
        case wait
    }

    public init(acknowledged: Int64, window: Int = 64, readyLimit: Int = 10_000) {
        precondition(window > 0 && readyLimit > 0)
        self.acknowledged = acknowledged
        self.sent = acknowledged
        self.window = window
        self.readyLimit = readyLimit
    }

    public var inFlightCount: Int { inFlight.count }

    /// Events this process committed, with their sequences, ascending.
    public mutating func committed(_ events: [UpdraftEvent]) {
        let after = max(sent, ready.last?.sequence ?? 0)
        let fresh = events.filter { $0.sequence > after }
        // Over the limit (a long broker outage): keep memory bounded, read them back later.
        guard ready.count + fresh.count <= readyLimit else { return }
        ready += fresh
    }

    /// What to do next, knowing the store holds events up to `storeLast`.
    public mutating func next(storeLast: Int64) -> Step {
        if let stale = ready.firstIndex(where: { $0.sequence > sent }) {
            ready.removeFirst(stale)
        } else {
            ready.removeAll()
        }
        let capacity = window - inFlight.count
        guard capacity > 0 else { return .wait }
        if let first = ready.first, first.sequence == sent + 1 {
            var run = [first]
            for event in ready.dropFirst() {
                guard run.count < capacity, event.sequence == run[run.count - 1].sequence + 1 else { break }
                run.append(event)
            }
            return .send(run)
        }
        if storeLast > sent || !ready.isEmpty { return .read(after: sent, limit: capacity) }
        return .wait
    }

    /// The events were handed to the transport, in order. Only the ones that continue the
    /// sequence count; anything else is ignored (it is read again when due).
    public mutating func sending(_ events: [UpdraftEvent]) {
        for event in events where event.sequence == sent + 1 && inFlight.count < window {
            inFlight.append(event.sequence)
            sent = event.sequence
        }
    }

    /// The oldest unacknowledged publish was acknowledged; returns its sequence.
    @discardableResult
    public mutating func acknowledgedOldest() -> Int64? {
        guard !inFlight.isEmpty else { return nil }
        acknowledged = inFlight.removeFirst()
        return acknowledged
    }

    /// The unacknowledged publishes may be lost: send again after the acknowledged position.
    public mutating func rewind() {
        inFlight.removeAll()
        sent = acknowledged
    }
}
