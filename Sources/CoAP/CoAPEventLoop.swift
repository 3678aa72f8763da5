import CCoAP
import Dispatch
import Logging
import LoopSupport
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
    private let thread: LoopThread<LoopCore>
    var handle: LoopHandle { thread.handle }
    var core: LoopCore { thread.core }

    /// Starts the loop's thread.
    /// - Parameters:
    ///   - name: thread name (Linux keeps the first 15 bytes) and log metadata.
    ///   - logger: receives libcoap's own messages logged on this thread.
    public init(name: String = "coap", logger: Logger = Logger(label: "CoAP")) {
        var logger = logger
        logger[metadataKey: "coap.loop"] = "\(name)"
        CoAPLibrary.prepare(for: logger)
        self.name = name
        thread = LoopThread(name: name, core: { LoopCore(handle: $0, logger: logger) }, run: { $0.run() })
    }

    deinit {
        shutdown()
    }

    /// Stops every server and client on this loop (their contexts are freed),
    /// stops the thread and waits for it. Idempotent.
    public func shutdown() {
        thread.shutdown()
    }

    /// `true` on the loop's own thread.
    var isCurrentThread: Bool { handle.inLoop }

    /// Runs `body` on the loop thread. Returns `false` once the loop is shut down.
    @discardableResult
    func execute(_ body: @escaping @Sendable () -> Void) -> Bool {
        thread.execute(body)
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
        let accepted = handle.queue.enqueue {
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

/// The loop thread's own state.
///
/// `@unchecked Sendable`: created on the constructing thread, then touched only
/// by the loop thread (handed over once through `pthread_create`).
final class LoopCore: @unchecked Sendable {
    let handle: LoopHandle
    let loggerBox: LoggerBox

    private var members: [any LoopMember] = []
    private var pollFDs: [pollfd] = []
    /// When the sole member next needs a call (one-member mode).
    private var soleDue: ContinuousClock.Instant?

    /// Upper bound of a poll: libcoap's timers wake the loop through the epoll
    /// descriptor; this only bounds the damage of a missed wake-up.
    private static let maxSleep: Duration = .seconds(1)

    init(handle: LoopHandle, logger: Logger) {
        self.handle = handle
        self.loggerBox = LoggerBox(logger)
    }

    /// NIOLoopBound-style check at the entry points of loop-bound types.
    func preconditionInLoop(file: StaticString = #fileID, line: UInt = #line) {
        handle.preconditionInLoop(file: file, line: line)
    }

    var logger: Logger { loggerBox.logger }

    /// The member whose epoll set holds the wake eventfd (one-member mode).
    private var wakeHost: (any LoopMember)?

    func add(_ member: any LoopMember) {
        preconditionInLoop()
        members.append(member)
    }

    func remove(_ member: any LoopMember) {
        preconditionInLoop()
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
        guard ccoap_epoll_add_wake(member.pollFD, handle.queue.loopWakeFD) == 0 else {
            logger.warning("cannot add the wake descriptor to libcoap's epoll set; polling", metadata: ["errno": "\(errno)"])
            return nil
        }
        wakeHost = member
        return member
    }

    private func unregisterWake() {
        if let host = wakeHost, host.pollFD >= 0 {
            _ = ccoap_epoll_remove(host.pollFD, handle.queue.loopWakeFD)
        }
        wakeHost = nil
    }

    func run() {
        CoAPLibrary.setThreadLogger(loggerBox)
        logger.debug("event loop started")
        while !handle.runQueuedCommands() {
            loggerBox.flushRepeats()
            if let member = soleMember() {
                // Sleeps in libcoap's epoll_wait: network input, libcoap's timers and the wake eventfd end it.
                let now = ContinuousClock.now
                var deadline = now + Self.maxSleep
                if let due = soleDue, due < deadline { deadline = due }
                let wait = LoopHandle.milliseconds(until: deadline, from: now)
                soleDue = member.process(now: now, ioTimeout: wait > 0 ? UInt32(wait) : CCOAP_IO_NO_WAIT)
            } else {
                soleDue = nil
                processAllAndPoll()
            }
        }
        unregisterWake()
        let remaining = members
        members.removeAll()
        for member in remaining {
            member.loopDidShutDown()
        }
        handle.queue.closeWakeFD()
        logger.debug("event loop stopped")
        CoAPLibrary.setThreadLogger(nil)
    }

    /// Several members (or none): each runs `coap_io_process` without waiting, then the
    /// loop sleeps in `poll` on the wake descriptor and every member's epoll descriptor.
    private func processAllAndPoll() {
        let now = ContinuousClock.now
        var deadline = now + Self.maxSleep
        for member in members {
            if let due = member.process(now: now, ioTimeout: CCOAP_IO_NO_WAIT), due < deadline {
                deadline = due
            }
        }
        pollFDs.removeAll(keepingCapacity: true)
        pollFDs.append(pollfd(fd: handle.queue.loopWakeFD, events: Int16(POLLIN), revents: 0))
        for member in members where member.pollFD >= 0 {
            pollFDs.append(pollfd(fd: member.pollFD, events: Int16(POLLIN), revents: 0))
        }
        let timeout = LoopHandle.milliseconds(until: deadline, from: ContinuousClock.now)
        let ready = poll(&pollFDs, nfds_t(pollFDs.count), timeout)
        if ready < 0 && errno != EINTR {
            logger.error("poll failed", metadata: ["errno": "\(errno)"])
        }
        // A readable wake descriptor is cleared by the next `drain`.
    }
}
