import CMosquitto
import Logging
import LoopSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `mosquitto_lib_init` runs once per process, on first use of any loop.
private let libraryInitialized = Result { () throws(MosquittoError) in
    try MosquittoError.check(mosquitto_lib_init(), "mosquitto_lib_init")
}

/// One thread that drives many ``MosquittoClient``s with `poll()`.
///
/// Every libmosquitto call for a client happens on its loop's thread. Other
/// threads hand work to the loop as closures through a mutex-protected queue
/// and wake it with an eventfd. Each iteration the loop runs the queued
/// commands, fires due timers (reconnect backoff, connect timeouts), calls
/// `mosquitto_loop_misc` about once a second for keep-alive, then polls the
/// sockets of all clients and reads and writes the ready ones.
///
/// Use ``shared`` for a few clients; create several loops to spread many
/// clients over cores (each loop is one thread). ``shutdown()`` closes the
/// loop's clients and joins the thread.
public final class MosquittoEventLoop: Sendable {
    /// A process-wide loop, started on first use and never shut down.
    public static let shared = MosquittoEventLoop(name: "mosquitto")

    private let thread: LoopThread<LoopCore>
    public var name: String { thread.handle.name }
    var handle: LoopHandle { thread.handle }
    /// Loop-thread state; clients keep a reference but use it only on the loop thread.
    var core: LoopCore { thread.core }

    /// Starts the loop's thread.
    /// - Parameters:
    ///   - name: thread name (Linux keeps the first 15 bytes) and log metadata.
    ///   - logger: logs of the loop itself; clients log through their own logger.
    public init(name: String = "mosquitto", logger: Logger = Logger(label: "Mosquitto")) {
        if case .failure(let error) = libraryInitialized {
            preconditionFailure("\(error)")
        }
        var logger = logger
        logger[metadataKey: "mqtt.loop"] = "\(name)"
        Self.checkLibraryVersion(logger: logger)
        thread = LoopThread(name: name, core: { LoopCore(handle: $0, logger: logger) }, run: { $0.run() })
    }

    /// Closes every client of this loop (without DISCONNECT packets if they
    /// cannot be sent at once), stops the thread and waits for it. Commands
    /// submitted afterwards fail with "event loop is shut down". Idempotent.
    public func shutdown() {
        thread.shutdown()
    }

    /// Runs `body` on the loop thread. Returns `false` if the loop is shut down.
    @discardableResult
    func execute(_ body: @escaping @Sendable () -> Void) -> Bool {
        thread.execute(body)
    }

    deinit {
        shutdown()
    }

    private static func checkLibraryVersion(logger: Logger) {
        var major: Int32 = 0
        var minor: Int32 = 0
        var revision: Int32 = 0
        let runtime = mosquitto_lib_version(&major, &minor, &revision)
        if runtime < cmosquitto_header_version() {
            logger.warning(
                "libmosquitto at run time is older than the headers built against",
                metadata: ["mqtt.lib.runtime": "\(major).\(minor).\(revision)", "mqtt.lib.headers": "\(cmosquitto_header_version())"]
            )
        }
    }
}

/// The loop thread's own state.
///
/// `@unchecked Sendable`: created on the constructing thread, then touched
/// only by the loop thread (handed over once through `pthread_create`).
final class LoopCore: @unchecked Sendable {
    let handle: LoopHandle
    let logger: Logger

    private var clients: [ClientCore] = []
    private var retired: [ClientCore] = []
    private var pollFDs: [pollfd] = []
    private var pollOwners: [ClientCore] = []
    private var nextMisc = ContinuousClock.now

    /// How often `mosquitto_loop_misc` runs: keep-alive has one-second resolution.
    private static let miscInterval: Duration = .seconds(1)

    init(handle: LoopHandle, logger: Logger) {
        self.handle = handle
        self.logger = logger
    }

    /// NIOLoopBound-style check at the entry points of loop-bound types.
    func preconditionInLoop(file: StaticString = #fileID, line: UInt = #line) {
        handle.preconditionInLoop(file: file, line: line)
    }

    // MARK: Client registry

    func register(_ client: ClientCore) {
        preconditionInLoop()
        client.loopIndex = clients.count
        clients.append(client)
    }

    /// The client's handle is destroyed at the end of the current step, never
    /// from inside a libmosquitto callback.
    func retire(_ client: ClientCore) {
        preconditionInLoop()
        retired.append(client)
    }

    private func reapRetired() {
        while let client = retired.popLast() {
            let index = client.loopIndex
            if index >= 0 && index < clients.count && clients[index] === client {
                clients.swapAt(index, clients.count - 1)
                clients[index].loopIndex = index
                clients.removeLast()
            }
            client.loopIndex = -1
            client.destroyHandle()
        }
    }

    // MARK: The loop

    func run() {
        blockSIGPIPE()
        logger.debug("event loop started")
        while true {
            let shutdown = handle.runQueuedCommands()
            reapRetired()
            if shutdown {
                break
            }
            let deadline = runTimers(now: .now)
            reapRetired()
            pollSockets(until: deadline)
            reapRetired()
        }
        for client in clients {
            client.close(reason: "event loop \(handle.name) is shut down")
        }
        reapRetired()
        pollOwners.removeAll()
        handle.queue.closeWakeFD()
        logger.debug("event loop stopped")
    }

    /// Keep-alive about once a second and the clients' own deadlines; returns when the
    /// loop must wake up next.
    private func runTimers(now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        if now >= nextMisc {
            for client in clients {
                client.misc()
            }
            nextMisc = now + Self.miscInterval
        }
        var deadline = nextMisc
        for client in clients {
            client.tick(now: now)
            if let due = client.nextDeadline, due < deadline {
                deadline = due
            }
        }
        return deadline
    }

    /// Sleeps in `poll` on the wake descriptor and the clients' sockets until `deadline`,
    /// then reads and writes the ready sockets.
    private func pollSockets(until deadline: ContinuousClock.Instant) {
        pollFDs.removeAll(keepingCapacity: true)
        pollOwners.removeAll(keepingCapacity: true)
        pollFDs.append(pollfd(fd: handle.queue.loopWakeFD, events: Int16(POLLIN), revents: 0))
        for client in clients {
            if let interest = client.pollInterest() {
                pollFDs.append(pollfd(fd: interest.fd, events: interest.events, revents: 0))
                pollOwners.append(client)
            }
        }
        let timeout = LoopHandle.milliseconds(until: deadline, from: .now)
        let ready = poll(&pollFDs, nfds_t(pollFDs.count), timeout)
        if ready < 0 && errno != EINTR {
            logger.error("poll failed", metadata: ["errno": "\(errno)"])
        }
        guard ready > 0 else { return }
        // A readable wake descriptor is cleared by the next `drain`.
        for index in 1..<pollFDs.count {
            let revents = Int32(pollFDs[index].revents)
            if revents != 0 {
                pollOwners[index - 1].handle(fd: pollFDs[index].fd, revents: revents)
            }
        }
    }

    /// libmosquitto writes TLS through OpenSSL, which does not pass
    /// MSG_NOSIGNAL; a peer reset must not kill the process. SIGPIPE is
    /// delivered to the writing thread, so blocking it here is enough.
    private func blockSIGPIPE() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }
}
