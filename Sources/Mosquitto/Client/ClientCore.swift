import CMosquitto
import Logging
import LoopSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// State of one client shared with any thread.
final class ClientStatus: Sendable {
    let connected = Atomic<Bool>(false)
    let failedPublishes = Atomic<Int>(0)
}

/// The part of a client that lives on its event loop's thread: the libmosquitto
/// handle, the ``ConnectionStateMachine`` and the tables of operations waiting for the
/// broker. It performs what the state machine decides.
///
/// `@unchecked Sendable`: after `init` every method runs on `loop`'s thread, either
/// from a command closure or from a libmosquitto callback; the entry points check it
/// (`loop.preconditionInLoop()`). The fields other threads see are the `Sendable`
/// `inbox`, `status` and `events`.
final class ClientCore: @unchecked Sendable {
    let options: MosquittoOptions
    let logger: Logger
    let inbox: Inbox
    let status: ClientStatus
    let events: AsyncStream<ConnectionEvent>.Continuation
    let loop: LoopCore

    var mosq: OpaquePointer?
    private var userdata: UnsafeMutableRawPointer?
    var state: ConnectionStateMachine
    var reportedNoWaitFailure = false
    /// Index in `LoopCore.clients`; -1 when not registered.
    var loopIndex = -1
    /// > 0 while a libmosquitto callback of this client runs.
    var callbackDepth = 0

    var connectWaiters: [(completion: Completion<Void>, deadline: ContinuousClock.Instant)] = []
    var disconnectWaiters: [Completion<Void>] = []
    /// Work waiting for the connection to be announced (publishes during a reconnect).
    var parked: [(completion: Completion<Void>, run: () -> Void)] = []
    var publishWaiters: [Int32: Completion<Void>] = [:]
    /// Batches of QoS 0 publishes waiting to be written, by the mid of their last message.
    var writeWaiters: [Int32: @Sendable (Bool) -> Void] = [:]
    /// QoS 0 mids written while `mosquitto_publish` ran (libmosquitto writes at once
    /// outside callbacks, so on_publish can come before the mid is known).
    var writtenDuringPublish: Set<Int32>?

    var subscribeWaiters: [String: [Completion<Void>]] = [:]
    var subscribeMids: [Int32: String] = [:]
    /// Unsubscribes not yet acknowledged; re-sent after a reconnect.
    var pendingUnsubscribes: [String: [Completion<Void>]] = [:]
    var unsubscribeMids: [Int32: String] = [:]

    init(
        options: MosquittoOptions, logger: Logger, inbox: Inbox, status: ClientStatus,
        events: AsyncStream<ConnectionEvent>.Continuation, loop: LoopCore
    ) {
        self.options = options
        self.logger = logger
        self.inbox = inbox
        self.status = status
        self.events = events
        self.loop = loop
        self.state = ConnectionStateMachine(endpoint: "\(options.host):\(options.port)", reconnect: options.reconnect)
    }

    var endpoint: String { state.endpoint }

    // MARK: - Handle

    private func ensureHandle() throws(MosquittoError) {
        if mosq != nil { return }
        let userdata = Unmanaged.passRetained(self).toOpaque()
        guard let handle = mosquitto_new(options.clientID, options.cleanSession, userdata) else {
            Unmanaged<ClientCore>.fromOpaque(userdata).release()
            let code = errno == EINVAL ? MOSQ_ERR_INVAL.rawValue : MOSQ_ERR_NOMEM.rawValue
            throw MosquittoError(
                code: code, operation: "mosquitto_new",
                message: "cannot create client \"\(options.clientID)\": a persistent session (cleanSession false) needs a client ID"
            )
        }
        do throws(MosquittoError) {
            try configure(handle)
        } catch {
            mosquitto_destroy(handle)
            Unmanaged<ClientCore>.fromOpaque(userdata).release()
            throw error
        }
        self.mosq = handle
        self.userdata = userdata
        loop.register(self)
    }

    private func configure(_ handle: OpaquePointer) throws(MosquittoError) {
        try MosquittoError.check(
            mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, options.protocolVersion.libmosquittoValue),
            "set protocol version")
        try MosquittoError.check(mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1), "set TCP_NODELAY")
        if options.username != nil || options.password != nil {
            try MosquittoError.check(
                mosquitto_username_pw_set(handle, options.username, options.password), "mosquitto_username_pw_set")
        }
        if let will = options.will {
            let rc = will.payload.withUnsafeBytes { bytes in
                mosquitto_will_set(
                    handle, will.topic, Int32(clamping: bytes.count), bytes.baseAddress, will.qos.rawValue, will.retain)
            }
            try MosquittoError.check(rc, "mosquitto_will_set (topic \(will.topic))")
        }
        if let tls = options.tls {
            try MosquittoError.check(
                mosquitto_tls_set(handle, tls.caFile, tls.caPath, tls.certFile, tls.keyFile, nil),
                "mosquitto_tls_set (check caFile/caPath/certFile/keyFile exist and are readable)")
            try MosquittoError.check(
                mosquitto_tls_opts_set(handle, 1, tls.tlsVersion, nil), "mosquitto_tls_opts_set")
            try MosquittoError.check(mosquitto_tls_insecure_set(handle, tls.insecure), "mosquitto_tls_insecure_set")
        }
        setCallbacks(handle)
    }

    static func from(_ userdata: UnsafeMutableRawPointer?) -> ClientCore {
        Unmanaged<ClientCore>.fromOpaque(userdata!).takeUnretainedValue()
    }

    /// Runs a callback body, marking that libmosquitto is on the stack.
    func inCallback(_ body: () -> Void) {
        callbackDepth += 1
        defer { callbackDepth -= 1 }
        body()
    }

    /// Called by the loop after `retire`, outside any libmosquitto call.
    func destroyHandle() {
        loop.preconditionInLoop()
        if let handle = mosq {
            mosquitto_destroy(handle)
            mosq = nil
        }
        if let userdata {
            self.userdata = nil
            Unmanaged<ClientCore>.fromOpaque(userdata).release()
        }
    }

    // MARK: - Connecting

    func connect(_ completion: Completion<Void>, timeout: Duration) {
        loop.preconditionInLoop()
        let deadline = ContinuousClock.now + timeout
        switch state.connectRequested() {
        case .fail(let reason):
            completion.fail(MosquittoError.notConnected("connect", reason))
        case .succeed:
            completion.succeed()
        case .wait:
            connectWaiters.append((completion, deadline))
        case .startFirstAttempt:
            do throws(MosquittoError) {
                try ensureHandle()
            } catch {
                completion.fail(error)
                return
            }
            connectWaiters.append((completion, deadline))
            startAttempt(first: true)
        }
    }

    func startAttempt(first: Bool) {
        guard let mosq else { return }
        state.attemptStarting()
        logger.debug("connecting", metadata: ["mqtt.broker": "\(endpoint)", "mqtt.attempt": "\(state.attempt)"])
        do throws(MosquittoError) {
            try MosquittoError.check(
                first
                    ? mosquitto_connect_async(
                        mosq, options.host, Int32(clamping: options.port), Int32(clamping: options.keepAlive))
                    : mosquitto_reconnect_async(mosq),
                "connect")
        } catch {
            connectFailed(error)
        }
    }

    /// A failed connect or write: a configuration error stops, anything else ends the attempt.
    func connectFailed(_ error: MosquittoError) {
        if error.code == MOSQ_ERR_INVAL.rawValue || error.code == MOSQ_ERR_NOT_SUPPORTED.rawValue {
            // A configuration error (e.g. keepAlive 1...4, empty host): retrying cannot help.
            stop(
                MosquittoError(
                    code: error.code, operation: "connect",
                    message: "\(error.message) Check host, port (1...65535) and keepAlive (0 or >= 5)."),
                abort: false)
        } else {
            connectionEnded(connectionError(error))
        }
    }

    /// Says which broker and what happened in words for a failure of the connection.
    func connectionError(_ error: MosquittoError) -> MosquittoError {
        let text: String
        switch error.code {
        case MOSQ_ERR_KEEPALIVE.rawValue: text = "no answer from \(endpoint) within the keep-alive interval"
        case MOSQ_ERR_CONN_LOST.rawValue: text = "connection to \(endpoint) lost"
        default: text = "\(endpoint): \(error.message)"
        }
        return MosquittoError(code: error.code, operation: "connection", message: text)
    }

    /// The current connection or attempt is over. Idempotent: only acts while the
    /// socket is active.
    func connectionEnded(_ error: MosquittoError?) {
        let action = state.connectionEnded(error, connectWaiting: !connectWaiters.isEmpty, now: .now)
        let wasAnnounced: Bool
        switch action {
        case .none: return
        case .finishClose:
            finishClose(reason: "the client was disconnected")
            return
        case .retry(_, let announced), .stop(_, let announced):
            wasAnnounced = announced
        }
        status.connected.store(false, ordering: .releasing)
        releaseWriteWaiters()
        subscribeMids.removeAll()
        unsubscribeMids.removeAll()
        if wasAnnounced {
            logger.warning("connection lost", metadata: ["mqtt.error": "\(error?.message ?? "closed")"])
            events.yield(.disconnected(error))
        } else {
            logger.debug("connection attempt failed", metadata: ["mqtt.error": "\(error?.message ?? "closed")"])
        }
        if case .stop(let cause, _) = action {
            failWaiters(cause ?? connectionError(MosquittoError(rc: MOSQ_ERR_CONN_LOST.rawValue, operation: "connection")))
        }
    }

    /// Stops trying; everything waiting for a connection fails.
    func stop(_ error: MosquittoError, abort: Bool) {
        if abort {
            abortSocket()
        }
        state.stop()
        status.connected.store(false, ordering: .releasing)
        failWaiters(error)
    }

    func failWaiters(_ error: MosquittoError) {
        let waiters = connectWaiters
        connectWaiters.removeAll()
        for waiter in waiters { waiter.completion.fail(error) }
        let parked = self.parked
        self.parked.removeAll()
        for entry in parked { entry.completion.fail(error) }
        let publishes = publishWaiters
        publishWaiters.removeAll()
        for completion in publishes.values { completion.fail(error) }
        releaseWriteWaiters()
        let subscribes = subscribeWaiters
        subscribeWaiters.removeAll()
        for completion in subscribes.values.joined() { completion.fail(error) }
        // The filters stay pending so they are unsubscribed on the next connection.
        for filter in Array(pendingUnsubscribes.keys) {
            let waiters = pendingUnsubscribes[filter] ?? []
            pendingUnsubscribes[filter] = []
            for completion in waiters { completion.fail(error) }
        }
    }

    /// Ends the TCP connection (FIN, no DISCONNECT) while libmosquitto keeps
    /// the descriptor; its next connect or destroy closes it.
    func abortSocket() {
        let fd = socket
        if fd >= 0 {
            _ = shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    /// CONNACK accepted: re-send pending unsubscribes and the remembered subscriptions;
    /// announce once they are acknowledged.
    func resubscribe(_ mosq: OpaquePointer, sessionPresent: Bool) {
        for filter in pendingUnsubscribes.keys {
            var mid: Int32 = 0
            if (try? MosquittoError.check(mosquitto_unsubscribe(mosq, &mid, filter), "unsubscribe")) != nil {
                unsubscribeMids[mid] = filter
            }
        }
        var mids: Set<Int32> = []
        for subscription in state.connackAccepted() {
            var mid: Int32 = 0
            do throws(MosquittoError) {
                try MosquittoError.check(
                    mosquitto_subscribe(mosq, &mid, subscription.filter, subscription.qos.rawValue), "subscribe")
                subscribeMids[mid] = subscription.filter
                mids.insert(mid)
            } catch {
                logger.error(
                    "re-subscribe failed", metadata: ["mqtt.filter": "\(subscription.filter)", "mqtt.error": "\(error)"])
            }
        }
        if state.resubscriptionsSent(mids: mids, sessionPresent: sessionPresent) {
            announce(sessionPresent: sessionPresent)
        }
    }

    func announce(sessionPresent: Bool) {
        state.announce()
        reportedNoWaitFailure = false
        status.connected.store(true, ordering: .releasing)
        logger.info(
            "connected",
            metadata: ["mqtt.broker": "\(endpoint)", "mqtt.session_present": "\(sessionPresent)",
                       "mqtt.subscriptions": "\(state.subscriptions.count)"])
        let waiters = connectWaiters
        connectWaiters.removeAll()
        for waiter in waiters { waiter.completion.succeed() }
        events.yield(.connected(sessionPresent: sessionPresent))
        let parked = self.parked
        self.parked.removeAll()
        for entry in parked where !entry.completion.isDone {  // skip callers that were cancelled
            entry.run()
        }
    }

    // MARK: - Disconnecting

    /// Test and simulator hook: the TCP connection ends without DISCONNECT, so
    /// the broker publishes the will; the reconnect policy applies as for a real loss.
    func simulateNetworkDrop() {
        loop.preconditionInLoop()
        guard state.isConnected, socket >= 0 else { return }
        abortSocket()
        connectionEnded(
            MosquittoError(
                code: MOSQ_ERR_CONN_LOST.rawValue, operation: "connection",
                message: "connection to \(endpoint) dropped (simulated)"))
    }

    func disconnect(_ completion: Completion<Void>) {
        loop.preconditionInLoop()
        switch state.disconnectRequested(now: .now) {
        case .succeed:
            completion.succeed()
        case .wait:
            disconnectWaiters.append(completion)
        case .sendDisconnect:
            disconnectWaiters.append(completion)
            sendDisconnect()
        case .closeNow:
            disconnectWaiters.append(completion)
            abortSocket()
            finishClose(reason: "the client was disconnected")
        }
    }

    private func sendDisconnect() {
        guard let mosq else {
            finishClose(reason: "the client was disconnected")
            return
        }
        // Written at once when the socket is writable; on_disconnect(0) then runs inside this call.
        let sent = (try? MosquittoError.check(mosquitto_disconnect(mosq), "disconnect")) != nil
        if state.isDisconnecting {
            if !sent || mosquitto_socket(mosq) < 0 {
                finishClose(reason: "the client was disconnected")
            } else {
                flush()
            }
        }
    }

    /// The owner is gone or the loop shuts down: DISCONNECT if it can be sent
    /// now, then close.
    func close(reason: String) {
        loop.preconditionInLoop()
        if let mosq, state.closeRequested(now: .now) {
            // Best effort: closing follows whatever it returns.
            _ = try? MosquittoError.check(mosquitto_disconnect(mosq), "disconnect")
        }
        finishClose(reason: reason)
    }

    func finishClose(reason: String) {
        guard let wasConnected = state.close() else { return }
        status.connected.store(false, ordering: .releasing)
        let error = MosquittoError.notConnected("disconnect", reason)
        failWaiters(error)
        pendingUnsubscribes.removeAll()
        inbox.finish()
        if wasConnected {
            events.yield(.disconnected(nil))
        }
        events.finish()
        let waiters = disconnectWaiters
        disconnectWaiters.removeAll()
        for completion in waiters { completion.succeed() }
        logger.debug("closed", metadata: ["mqtt.reason": "\(reason)"])
        if mosq != nil {
            loop.retire(self)
        }
    }
}
