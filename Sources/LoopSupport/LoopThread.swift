import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The thread an event loop runs on: started with its body, joined once. Shared by the
/// Mosquitto and CoAP wrappers, whose C libraries want every call on one thread.
package final class LoopThread: Sendable {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    private let thread: pthread_t
    private let joined = Atomic<Bool>(false)

    /// Starts a thread that runs `body` and ends when it returns.
    package init(_ body: @escaping @Sendable () -> Void) {
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { argument in
                Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
                return nil
            },
            Unmanaged.passRetained(Body(body)).toOpaque()
        )
        precondition(rc == 0, "pthread_create failed: \(rc)")
        self.thread = thread
    }

    /// `true` on the thread itself.
    package var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }

    /// Waits for the body to return; from the thread itself (a command that shuts its own
    /// loop down), detaches instead: the body ends after that command. Idempotent.
    package func join() {
        guard !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if isCurrent {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }
}
