import Synchronization

/// An application message received from the broker.
public struct MosquittoMessage: Sendable, Hashable {
    public let topic: String
    public let payload: [UInt8]
    public let qos: QoS
    public let retain: Bool

    public init(topic: String, payload: [UInt8], qos: QoS, retain: Bool) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }
}

/// The messages of one client, in arrival order. Single consumer: iterate it
/// from one task at a time. Ends after ``MosquittoClient/disconnect()`` once
/// the buffered messages are consumed; an iterator whose task is cancelled
/// returns `nil` and leaves the buffered messages for the next iterator.
public struct MosquittoMessages: AsyncSequence, Sendable {
    public typealias Element = MosquittoMessage
    public typealias Failure = Never

    let inbox: Inbox

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(inbox: inbox)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let inbox: Inbox

        public mutating func next() async -> MosquittoMessage? {
            await inbox.next()
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async -> MosquittoMessage? {
            await inbox.next()
        }
    }
}

/// Bounded hand-off between the event loop (producer) and one consumer.
///
/// The loop appends without ever dropping; when `capacity` messages are
/// buffered it stops reading the socket (see `isReadPaused`). The consumer
/// resumes reading by draining below half the capacity, which calls `wake`.
final class Inbox: Sendable {
    private struct State {
        var buffer: [MosquittoMessage] = []
        var head = 0
        var waiter: CheckedContinuation<MosquittoMessage?, Never>?
        var finished = false
        var readPaused = false
        var peak = 0

        var count: Int { buffer.count - head }

        mutating func popFirst() -> MosquittoMessage? {
            guard head < buffer.count else { return nil }
            let message = buffer[head]
            head += 1
            if head == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 256 && head * 2 >= buffer.count {
                buffer.removeFirst(head)
                head = 0
            }
            return message
        }
    }

    let capacity: Int
    private let state = Mutex(State())
    private let wake: @Sendable () -> Void

    init(capacity: Int, wake: @escaping @Sendable () -> Void) {
        self.capacity = max(1, capacity)
        self.wake = wake
    }

    // MARK: Producer (event loop thread)

    /// Delivers to a waiting consumer or buffers. Never drops.
    func append(_ message: MosquittoMessage) {
        let waiter: CheckedContinuation<MosquittoMessage?, Never>? = state.withLock { state in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.buffer.append(message)
            let count = state.count
            state.peak = max(state.peak, count)
            if count >= capacity {
                state.readPaused = true
            }
            return nil
        }
        waiter?.resume(returning: message)
    }

    /// `true` while the consumer has not drained the inbox below half its capacity.
    var isReadPaused: Bool {
        state.withLock { $0.readPaused }
    }

    /// No more messages will be appended; the consumer ends after the buffer.
    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    // MARK: Consumer

    private enum Take {
        case ready(MosquittoMessage?, resumeReading: Bool)
        case empty
    }

    /// Pops the oldest message; `nil` message with `.ready` means finished.
    private static func take(_ state: inout State, capacity: Int) -> Take {
        if let message = state.popFirst() {
            var resume = false
            if state.readPaused && state.count <= capacity / 2 {
                state.readPaused = false
                resume = true
            }
            return .ready(message, resumeReading: resume)
        }
        return state.finished ? .ready(nil, resumeReading: false) : .empty
    }

    func next() async -> MosquittoMessage? {
        let capacity = self.capacity
        if case .ready(let message, let resume) = state.withLock({ Self.take(&$0, capacity: capacity) }) {
            if resume { wake() }
            return message
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<MosquittoMessage?, Never>) in
                let taken: Take = state.withLock { state in
                    let taken = Self.take(&state, capacity: capacity)
                    guard case .empty = taken else { return taken }
                    if Task.isCancelled {
                        return .ready(nil, resumeReading: false)
                    }
                    precondition(state.waiter == nil, "MosquittoMessages supports a single consumer")
                    state.waiter = continuation
                    return .empty
                }
                if case .ready(let message, let resume) = taken {
                    if resume { wake() }
                    continuation.resume(returning: message)
                }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    // MARK: Diagnostics

    /// Messages buffered and not yet consumed.
    var count: Int { state.withLock { $0.count } }
    /// Highest `count` seen.
    var peakCount: Int { state.withLock { $0.peak } }
}
