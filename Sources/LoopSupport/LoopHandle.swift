import CLoopSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What the parts of one event loop share: its name, the ``WakeQueue`` into it and which
/// thread it runs on. Shared by the Mosquitto and CoAP loops.
///
/// Types bound to a loop (a C handle confined to its thread) call
/// ``preconditionInLoop(file:line:)`` at their entry points, as swift-nio's `NIOLoopBound`
/// does: one relaxed atomic load and a compare, cheap enough for release builds.
package final class LoopHandle: Sendable {
    package let name: String
    package let queue: WakeQueue
    /// `pthread_self()` of the loop's thread once it started, 0 before.
    private let thread = Atomic<UInt>(0)

    /// Creates the wake eventfd; the thread is started by ``LoopThread``.
    package init(name: String) {
        let wakeFD = loop_support_wakefd_create()
        precondition(wakeFD >= 0, "eventfd failed: errno \(errno)")
        self.name = name
        self.queue = WakeQueue(wakeFD: wakeFD)
    }

    /// `true` on the loop's own thread.
    package var inLoop: Bool {
        // A thread that is not the loop reads 0 or the loop's id, never its own.
        thread.load(ordering: .relaxed) == UInt(bitPattern: Int(bitPattern: pthread_self()))
    }

    /// Stops the process when called off the loop's thread: a C handle used from two
    /// threads corrupts memory later and far away.
    package func preconditionInLoop(file: StaticString = #fileID, line: UInt = #line) {
        precondition(inLoop, "called off the thread of event loop \(name)", file: file, line: line)
    }

    /// Runs the commands queued since the last call. Returns `true` when the loop is asked
    /// to shut down; commands accepted before that request still ran (the drain that sees
    /// the request takes them too, and no command is accepted after it). Loop thread only.
    package func runQueuedCommands() -> Bool {
        let (commands, shutdown) = queue.drain()
        for command in commands {
            command()
        }
        return shutdown
    }

    /// Milliseconds for `poll`/`epoll_wait` until `deadline`, rounded up, 0 when due.
    package static func milliseconds(until deadline: ContinuousClock.Instant, from now: ContinuousClock.Instant) -> Int32 {
        guard deadline > now else { return 0 }
        let (seconds, attoseconds) = (deadline - now).components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: milliseconds)
    }

    /// Called first on the loop's thread by ``LoopThread``.
    fileprivate func bind() {
        loop_support_set_thread_name(name)
        thread.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .relaxed)
    }

    /// Called last on the loop's thread: a later thread may get the same id.
    fileprivate func unbind() {
        thread.store(0, ordering: .relaxed)
    }
}

/// The thread an event loop runs on, with the loop's handle and its loop-thread state
/// (`Core`): started with its body, joined once. Shared by the Mosquitto and CoAP
/// wrappers, whose C libraries want every call on one thread.
package final class LoopThread<Core: Sendable>: Sendable {
    package let handle: LoopHandle
    /// Touched only on the loop thread once it started.
    package let core: Core
    private let thread: pthread_t
    private let joined = Atomic<Bool>(false)

    /// Makes the loop's handle (wake eventfd) and its `Core`, then starts a thread named
    /// `name` that runs `run(core)` and ends when it returns.
    package init(name: String, core makeCore: (LoopHandle) -> Core, run: @escaping @Sendable (Core) -> Void) {
        let handle = LoopHandle(name: name)
        let core = makeCore(handle)
        self.handle = handle
        self.core = core
        self.thread = startThread {
            handle.bind()
            run(core)
            handle.unbind()
        }
    }

    /// `true` on the thread itself.
    package var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }

    /// Runs `command` on the loop thread. `false` once the loop is shut down.
    package func execute(_ command: @escaping @Sendable () -> Void) -> Bool {
        handle.queue.enqueue(command)
    }

    /// Asks the loop to stop and waits for its body to return; from the thread itself (a
    /// command that shuts its own loop down), detaches instead: the body ends after that
    /// command. Idempotent.
    package func shutdown() {
        handle.queue.requestShutdown()
        guard !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if isCurrent {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }
}

/// The closure a new thread runs, passed through `pthread_create`'s argument.
private final class ThreadBody {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Starts a thread that runs `body`. Outside the generic `LoopThread`: a C function
/// pointer cannot be formed in a generic context.
private func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    var thread = pthread_t()
    let rc = pthread_create(
        &thread, nil,
        { argument in
            Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        },
        Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    )
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return thread
}
