import Synchronization

/// A one-shot result an event loop thread (libmosquitto's, libcoap's) completes and
/// one task awaits. Shared by the Mosquitto and CoAP wrappers.
///
/// The first completion wins, so an answer arriving after the waiting task was
/// cancelled (or the other way round) is harmless. The loop keeps completions
/// in its tables; waiting tasks never touch loop state.
package final class Completion<Value: Sendable>: Sendable {
    private enum State {
        case pending
        case waiting(CheckedContinuation<Value, any Error>)
        case done(Result<Value, any Error>)
    }

    private let state = Mutex(State.pending)

    /// `true` once completed, also by the cancellation of the waiting task.
    package init() {}

    package var isDone: Bool {
        state.withLock { if case .done = $0 { true } else { false } }
    }

    package func succeed(_ value: Value) {
        complete(.success(value))
    }

    package func fail(_ error: any Error) {
        complete(.failure(error))
    }

    package func complete(_ result: Result<Value, any Error>) {
        let waiter: CheckedContinuation<Value, any Error>? = state.withLock { state in
            switch state {
            case .pending:
                state = .done(result)
                return nil
            case .waiting(let continuation):
                state = .done(result)
                return continuation
            case .done:
                return nil
            }
        }
        waiter?.resume(with: result)
    }

    /// Waits for the result. A cancelled task gets `CancellationError` at once
    /// and `onCancel` runs (to tell the loop to forget the operation).
    package func wait(onCancel: @escaping @Sendable () -> Void = {}) async throws -> Value {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
                let ready: Result<Value, any Error>? = state.withLock { state in
                    switch state {
                    case .pending:
                        state = .waiting(continuation)
                        return nil
                    case .done(let result):
                        return result
                    case .waiting:
                        preconditionFailure("Completion awaited twice")
                    }
                }
                if let ready {
                    continuation.resume(with: ready)
                }
            }
        } onCancel: {
            fail(CancellationError())
            onCancel()
        }
    }
}

extension Completion where Value == Void {
    package func succeed() {
        complete(.success(()))
    }
}
