import CCoAP
import Dispatch
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One thread that runs libcoap for the servers and clients placed on it.
///
/// libcoap 4.3.1 is not thread-safe: every call for a context happens on its
/// loop's thread. Other threads hand work over as closures through a
/// mutex-protected queue and wake the loop with an eventfd. Each iteration the
/// loop runs the queued commands, then lets the contexts do their I/O and timers.
///
/// With one context on the loop (the usual case: a server, or a client) the loop
/// sleeps inside `coap_io_process`, with the wake eventfd added to the context's
/// own epoll set: a request costs one `epoll_wait`, as in libcoap's own server.
/// libcoap takes the eventfd's event for its timer trigger (a null pointer),
/// which only makes it return; the loop clears the eventfd when it takes the
/// commands. With several contexts each one runs `coap_io_process` without
/// waiting, and the loop sleeps in `poll()` on the wake descriptor and every
/// context's epoll descriptor (`coap_context_get_coap_fd`), which becomes readable
/// for network input and for libcoap's own timers (retransmissions, observe
/// notifications, separate responses).
///
/// A ``CoAPServer`` or ``CoAPClient`` created without a loop makes its own. Put
/// several on one loop to keep all libcoap calls of a process on one thread.
public final class CoAPEventLoop: Sendable {
    public let name: String
    let queue: LoopQueue
    let core: LoopCore
    private let thread: pthread_t
    private let joined = Atomic<Bool>(false)

    /// Starts the loop's thread.
    /// - Parameters:
    ///   - name: thread name (Linux keeps the first 15 bytes) and log metadata.
    ///   - logger: receives libcoap's own messages logged on this thread.
    public init(name: String = "coap", logger: Logger = Logger(label: "CoAP")) {
        var logger = logger
        logger[metadataKey: "coap.loop"] = "\(name)"
        CoAPLibrary.prepare(for: logger)

        let wakeFD = ccoap_wakefd_create()
        precondition(wakeFD >= 0, "eventfd failed: errno \(errno)")
        self.name = name
        let queue = LoopQueue(wakeFD: wakeFD)
        self.queue = queue
        let core = LoopCore(queue: queue, name: name, logger: logger)
        self.core = core

        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { argument in
                let core = Unmanaged<LoopCore>.fromOpaque(argument!).takeRetainedValue()
                core.run()
                return nil
            },
            Unmanaged.passRetained(core).toOpaque()
        )
        precondition(rc == 0, "pthread_create failed: \(rc)")
        self.thread = thread
    }

    deinit {
        shutdown()
    }

    /// Stops every server and client on this loop (their contexts are freed),
    /// stops the thread and waits for it. Idempotent.
    public func shutdown() {
        queue.requestShutdown()
        guard !joined.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if isCurrentThread {
            // From a command or callback on the loop itself: it exits after this iteration.
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }

    /// `true` on the loop's own thread.
    var isCurrentThread: Bool {
        pthread_equal(pthread_self(), thread) != 0
    }

    /// Runs `body` on the loop thread. Returns `false` once the loop is shut down.
    @discardableResult
    func execute(_ body: @escaping @Sendable () -> Void) -> Bool {
        queue.enqueue(body)
    }

    /// Runs `body` on the loop thread and blocks until it returned; runs it
    /// inline when called on the loop thread. `nil` once the loop is shut down.
    /// For rare set-up and tear-down steps (start, stop), never per request.
    func executeAndWait<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T? {
        if isCurrentThread {
            return body()
        }
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        let accepted = queue.enqueue {
            let value = body()
            result.withLock { $0 = value }
            done.signal()
        }
        guard accepted else { return nil }
        // Every accepted command runs, also when the loop shuts down right after (see `LoopCore.run`).
        done.wait()
        return result.withLock { $0 }
    }
}

/// Something with a libcoap context that a loop drives. Loop thread only.
protocol LoopMember: AnyObject {
    /// libcoap's epoll descriptor of the context, or -1 when there is none.
    var pollFD: Int32 { get }
    /// Lets libcoap do its I/O and timers (`coap_io_process` with `ioTimeout`:
    /// milliseconds to wait for input, or `CCOAP_IO_NO_WAIT`), then handles the
    /// member's own deadlines. Returns when the member next needs a call.
    func process(now: ContinuousClock.Instant, ioTimeout: UInt32) -> ContinuousClock.Instant?
    /// The loop is shutting down: free the context, fail what waits.
    func loopDidShutDown()
}

/// The hand-over point between any thread and a loop thread.
final class LoopQueue: Sendable {
    private struct State {
        var commands: [@Sendable () -> Void] = []
        var wakePending = false
        var shutdownRequested = false
        /// -1 once the loop closed it, so a late wake-up cannot hit a reused descriptor.
        var wakeFD: Int32
    }

    private let state: Mutex<State>
    /// The eventfd as the loop polls it; valid until the loop closes it.
    let loopWakeFD: Int32

    init(wakeFD: Int32) {
        state = Mutex(State(wakeFD: wakeFD))
        loopWakeFD = wakeFD
    }

    /// Appends a command and wakes the loop. `false` once shut down.
    func enqueue(_ command: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            guard !state.shutdownRequested else { return false }
            state.commands.append(command)
            Self.wakeLocked(&state)
            return true
        }
    }

    func requestShutdown() {
        state.withLock { state in
            state.shutdownRequested = true
            Self.wakeLocked(&state)
        }
    }

    /// Takes the queued commands and clears the wake-up. Loop thread only.
    ///
    /// The eventfd is read under the lock, where no `wakeLocked` can write between
    /// the flag and the read: a wake-up for a later command is never swallowed.
    func drain() -> (commands: [@Sendable () -> Void], shutdown: Bool) {
        state.withLock { state in
            if state.wakePending, state.wakeFD >= 0 {
                var value: UInt64 = 0
                _ = read(state.wakeFD, &value, MemoryLayout<UInt64>.size)
            }
            state.wakePending = false
            defer { state.commands.removeAll(keepingCapacity: true) }
            return (state.commands, state.shutdownRequested)
        }
    }

    /// Loop thread, at exit.
    func closeWakeFD() {
        state.withLock { state in
            if state.wakeFD >= 0 {
                close(state.wakeFD)
                state.wakeFD = -1
            }
        }
    }

    /// Written under the lock: one non-blocking syscall, and `closeWakeFD` cannot race it.
    private static func wakeLocked(_ state: inout State) {
        guard !state.wakePending, state.wakeFD >= 0 else { return }
        state.wakePending = true
        var one: UInt64 = 1
        _ = write(state.wakeFD, &one, MemoryLayout<UInt64>.size)
    }
}

/// The loop thread's own state.
///
/// `@unchecked Sendable`: created on the constructing thread, then touched only
/// by the loop thread (handed over once through `pthread_create`).
final class LoopCore: @unchecked Sendable {
    let queue: LoopQueue
    let name: String
    let loggerBox: LoggerBox

    private var members: [any LoopMember] = []
    private var pollFDs: [pollfd] = []
    /// When the sole member next needs a call (one-member mode).
    private var soleDue: ContinuousClock.Instant?

    /// Upper bound of a poll: libcoap's timers wake the loop through the epoll
    /// descriptor; this only bounds the damage of a missed wake-up.
    private static let maxSleep: Duration = .seconds(1)

    init(queue: LoopQueue, name: String, logger: Logger) {
        self.queue = queue
        self.name = name
        self.loggerBox = LoggerBox(logger)
    }

    var logger: Logger { loggerBox.logger }

    /// The member whose epoll set holds the wake eventfd (one-member mode).
    private var wakeHost: (any LoopMember)?

    func add(_ member: any LoopMember) {
        members.append(member)
    }

    func remove(_ member: any LoopMember) {
        if let host = wakeHost, host === member { unregisterWake() }
        members.removeAll { $0 === member }
    }

    /// The member to sleep in, with the wake eventfd in its epoll set; `nil` when
    /// the loop has several members (or none) and sleeps in `poll()`.
    private func soleMember() -> (any LoopMember)? {
        guard members.count == 1, let member = members.first, member.pollFD >= 0 else {
            if wakeHost != nil { unregisterWake() }
            return nil
        }
        if let host = wakeHost, host === member { return member }
        if wakeHost != nil { unregisterWake() }
        // A null data pointer is libcoap's timer trigger: its event ends the wait and nothing more.
        guard ccoap_epoll_add_wake(member.pollFD, queue.loopWakeFD) == 0 else {
            logger.warning("cannot add the wake descriptor to libcoap's epoll set; polling", metadata: ["errno": "\(errno)"])
            return nil
        }
        wakeHost = member
        return member
    }

    private func unregisterWake() {
        if let host = wakeHost, host.pollFD >= 0 {
            _ = ccoap_epoll_remove(host.pollFD, queue.loopWakeFD)
        }
        wakeHost = nil
    }

    func run() {
        ccoap_set_thread_name(name)
        CoAPLibrary.setThreadLogger(loggerBox)
        logger.debug("event loop started")

        while true {
            // Commands accepted before a shutdown request still run: the drain that
            // sees the request takes them too, and no command is accepted after it.
            let (commands, shutdown) = queue.drain()
            for command in commands {
                command()
            }
            if shutdown {
                break
            }

            if let member = soleMember() {
                // Sleeps in libcoap's epoll_wait: network input, libcoap's timers and the wake eventfd end it.
                let now = ContinuousClock.now
                var deadline = now + Self.maxSleep
                if let due = soleDue, due < deadline { deadline = due }
                let wait = Self.milliseconds(until: deadline, from: now)
                soleDue = member.process(now: now, ioTimeout: wait > 0 ? UInt32(wait) : CCOAP_IO_NO_WAIT)
                continue
            }
            soleDue = nil

            let now = ContinuousClock.now
            var deadline = now + Self.maxSleep
            for member in members {
                if let due = member.process(now: now, ioTimeout: CCOAP_IO_NO_WAIT), due < deadline {
                    deadline = due
                }
            }

            pollFDs.removeAll(keepingCapacity: true)
            pollFDs.append(pollfd(fd: queue.loopWakeFD, events: Int16(POLLIN), revents: 0))
            for member in members where member.pollFD >= 0 {
                pollFDs.append(pollfd(fd: member.pollFD, events: Int16(POLLIN), revents: 0))
            }
            let timeout = Self.milliseconds(until: deadline, from: ContinuousClock.now)
            let ready = poll(&pollFDs, nfds_t(pollFDs.count), timeout)
            if ready < 0 && errno != EINTR {
                logger.error("poll failed", metadata: ["errno": "\(errno)"])
            }
            // A readable wake descriptor is cleared by the next `drain`.
        }

        unregisterWake()
        let remaining = members
        members.removeAll()
        for member in remaining {
            member.loopDidShutDown()
        }
        queue.closeWakeFD()
        logger.debug("event loop stopped")
        CoAPLibrary.setThreadLogger(nil)
    }

    private static func milliseconds(
        until deadline: ContinuousClock.Instant, from now: ContinuousClock.Instant
    ) -> Int32 {
        guard deadline > now else { return 0 }
        let (seconds, attoseconds) = (deadline - now).components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: milliseconds)
    }
}
