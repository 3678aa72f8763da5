import CMosquitto
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
import LoopSupport
#endif

/// State of one client shared with any thread.
final class ClientStatus: Sendable {
    let connected = Atomic<Bool>(false)
    let failedPublishes = Atomic<Int>(0)
}

/// The part of a client that lives on its event loop's thread: the
/// libmosquitto handle, the connection state machine and the tables of
/// operations waiting for the broker.
///
/// `@unchecked Sendable`: after `init` every method runs on `loop`'s thread,
/// either from a command closure or from a libmosquitto callback. The fields
/// other threads see are the `Sendable` `inbox`, `status` and `events`.
final class ClientCore: @unchecked Sendable {
    enum Phase {
        /// Not connected and not trying to.
        case idle
        /// An attempt is in flight: TCP, TLS, CONNECT/CONNACK.
        case connecting
        /// Next attempt at the given instant (backoff).
        case waitingRetry(ContinuousClock.Instant)
        /// CONNACK accepted. `announced` once re-subscriptions are acknowledged.
        case connected
        /// DISCONNECT sent; closes on `on_disconnect` or at the deadline.
        case disconnecting(ContinuousClock.Instant)
        /// Terminal; the handle is destroyed.
        case closed
    }

    let options: MosquittoOptions
    let logger: Logger
    let inbox: Inbox
    let status: ClientStatus
    let events: AsyncStream<ConnectionEvent>.Continuation
    let loop: LoopCore

    private var mosq: OpaquePointer?
    private var userdata: UnsafeMutableRawPointer?
    private var phase = Phase.idle
    /// `.connected` was emitted for the current connection.
    private var announced = false
    /// Reconnect after a loss: the client has been connected since `connect()`.
    private var autoReconnect = false
    private var attempt = 0
    private var lastError: MosquittoError?
    private var reportedNoWaitFailure = false
    /// Index in `LoopCore.clients`; -1 when not registered.
    var loopIndex = -1
    /// > 0 while a libmosquitto callback of this client runs.
    private var callbackDepth = 0

    private var connectWaiters: [(completion: Completion<Void>, deadline: ContinuousClock.Instant)] = []
    private var disconnectWaiters: [Completion<Void>] = []
    /// Work waiting for the connection to be announced (publishes during a reconnect).
    private var parked: [(completion: Completion<Void>, run: () -> Void)] = []
    private var publishWaiters: [Int32: Completion<Void>] = [:]
    /// Batches of QoS 0 publishes waiting to be written, by the mid of their last message.
    private var writeWaiters: [Int32: @Sendable (Bool) -> Void] = [:]
    /// QoS 0 mids written while `mosquitto_publish` ran (libmosquitto writes at once
    /// outside callbacks, so on_publish can come before the mid is known).
    private var writtenDuringPublish: Set<Int32>?

    /// Remembered subscriptions, re-sent after every (re)connect, in order.
    private var subscriptions: [(filter: String, qos: QoS)] = []
    private var subscribeWaiters: [String: [Completion<Void>]] = [:]
    private var subscribeMids: [Int32: String] = [:]
    private var resubscribeMids: Set<Int32> = []
    /// CONNACK's session-present flag, announced once the re-subscriptions are acknowledged.
    private var pendingSessionPresent = false
    /// Unsubscribes not yet acknowledged; re-sent after a reconnect.
    private var pendingUnsubscribes: [String: [Completion<Void>]] = [:]
    private var unsubscribeMids: [Int32: String] = [:]

    /// Reads per ready event before the loop serves other clients.
    private static let readBurst = 64
    /// How long a DISCONNECT may take to flush.
    private static let disconnectGrace: Duration = .seconds(2)

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
    }

    private var endpoint: String { "\(options.host):\(options.port)" }

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
        do {
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
            mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311), "set protocol version")
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

        mosquitto_connect_with_flags_callback_set(handle) { _, userdata, rc, flags in
            let core = ClientCore.from(userdata)
            core.inCallback { core.didConnect(rc: rc, flags: flags) }
        }
        mosquitto_disconnect_callback_set(handle) { _, userdata, rc in
            let core = ClientCore.from(userdata)
            core.inCallback { core.didDisconnect(rc: rc) }
        }
        mosquitto_publish_callback_set(handle) { _, userdata, mid in
            let core = ClientCore.from(userdata)
            core.inCallback { core.didPublish(mid: mid) }
        }
        mosquitto_message_callback_set(handle) { _, userdata, message in
            guard let message else { return }
            let core = ClientCore.from(userdata)
            core.inCallback { core.didReceive(message.pointee) }
        }
        mosquitto_subscribe_callback_set(handle) { _, userdata, mid, count, granted in
            let first: Int32? = (count > 0 && granted != nil) ? granted![0] : nil
            let core = ClientCore.from(userdata)
            core.inCallback { core.didSubscribe(mid: mid, granted: first) }
        }
        mosquitto_unsubscribe_callback_set(handle) { _, userdata, mid in
            let core = ClientCore.from(userdata)
            core.inCallback { core.didUnsubscribe(mid: mid) }
        }
        // libmosquitto formats a line per packet when a log callback is set.
        if logger.logLevel <= .debug {
            mosquitto_log_callback_set(handle) { _, userdata, level, text in
                guard let text else { return }
                ClientCore.from(userdata).didLog(level: level, text: String(cString: text))
            }
        }
    }

    private static func from(_ userdata: UnsafeMutableRawPointer?) -> ClientCore {
        Unmanaged<ClientCore>.fromOpaque(userdata!).takeUnretainedValue()
    }

    /// Runs a callback body, marking that libmosquitto is on the stack.
    private func inCallback(_ body: () -> Void) {
        callbackDepth += 1
        defer { callbackDepth -= 1 }
        body()
    }

    /// Called by the loop after `retire`, outside any libmosquitto call.
    func destroyHandle() {
        if let handle = mosq {
            mosquitto_destroy(handle)
            mosq = nil
        }
        if let userdata {
            self.userdata = nil
            Unmanaged<ClientCore>.fromOpaque(userdata).release()
        }
    }

    // MARK: - Polling (called by the loop)

    /// The socket is owned by us only in these phases; otherwise it is left alone.
    private var isSocketActive: Bool {
        switch phase {
        case .connecting, .connected, .disconnecting: true
        case .idle, .waitingRetry, .closed: false
        }
    }

    private var socket: Int32 {
        guard let mosq else { return -1 }
        return mosquitto_socket(mosq)
    }

    func pollInterest() -> (fd: Int32, events: Int16)? {
        guard let mosq, isSocketActive else { return nil }
        let fd = mosquitto_socket(mosq)
        guard fd >= 0 else { return nil }
        var events: Int32 = 0
        if mayRead {
            events |= Int32(POLLIN)
        }
        if mosquitto_want_write(mosq) {
            events |= Int32(POLLOUT)
        }
        return (fd, Int16(events))
    }

    /// Reading stops while the inbox is full, except until the connection is
    /// announced: CONNACK and the SUBACKs of re-subscriptions must get through.
    private var mayRead: Bool {
        !announced || !inbox.isReadPaused
    }

    func handle(fd: Int32, revents: Int32) {
        let hangup = revents & Int32(POLLHUP | POLLERR) != 0
        if revents & Int32(POLLIN) != 0 || hangup {
            read(fd: fd, hangup: hangup)
        }
        if revents & Int32(POLLOUT) != 0 {
            write(fd: fd, force: true)
        } else {
            write(fd: fd, force: false)
        }
    }

    /// Reads packets while data is waiting, up to `readBurst`. After a hang-up
    /// the rest of the socket is read regardless of the inbox, so that nothing
    /// the broker already sent is lost; the socket buffer bounds the overshoot.
    private func read(fd: Int32, hangup: Bool) {
        var budget = Self.readBurst
        while let mosq, isSocketActive, mosquitto_socket(mosq) == fd {
            let rc = mosquitto_loop_read(mosq, 1)
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                // Usually on_disconnect already ran; this covers failures that skip it (TLS handshake).
                connectionEnded(connectionError(rc))
                return
            }
            budget -= 1
            guard budget > 0, hangup || mayRead, Self.hasPendingInput(fd) else { return }
        }
    }

    private func write(fd: Int32, force: Bool) {
        guard let mosq, isSocketActive, mosquitto_socket(mosq) == fd else { return }
        guard force || mosquitto_want_write(mosq) else { return }
        let rc = mosquitto_loop_write(mosq, 1)
        if rc == MOSQ_ERR_INVAL.rawValue || rc == MOSQ_ERR_NOT_SUPPORTED.rawValue {
            // A configuration error (e.g. keepAlive 1...4, empty host): retrying cannot help.
            let reason = MosquittoError(rc: rc, operation: "connect").message
            goIdle(
                MosquittoError(
                    code: rc, operation: "connect",
                    message: "\(reason) Check host, port (1...65535) and keepAlive (0 or >= 5)."),
                abort: false)
        } else if rc != MOSQ_ERR_SUCCESS.rawValue {
            connectionEnded(connectionError(rc))
        }
    }

    /// Sends what libmosquitto queued: packets created inside callbacks are
    /// only queued, and a partial write leaves the rest queued.
    ///
    /// Not from inside a callback: libmosquitto holds its callback mutex there
    /// and `loop_write` takes it again (on_publish). The caller of the
    /// read/write that ran the callback flushes once it returns.
    private func flush() {
        guard callbackDepth == 0 else { return }
        let fd = socket
        if fd >= 0 {
            write(fd: fd, force: false)
        }
    }

    private static func hasPendingInput(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
    }

    /// Keep-alive (PINGREQ, broker timeout). Called about once a second.
    ///
    /// Skipped while reading is paused for a slow consumer: the PINGRESP would sit
    /// unread behind the paused messages and libmosquitto would call the connection
    /// lost after one keep-alive interval, dropping and re-fetching the whole backlog
    /// in a loop. A consumer stalled for 1.5 x keep-alive is dropped by the broker
    /// instead, which is the broker's call to make.
    func misc() {
        guard let mosq, isSocketActive, mosquitto_socket(mosq) >= 0 else { return }
        guard mayRead else { return }
        let rc = mosquitto_loop_misc(mosq)
        if rc != MOSQ_ERR_SUCCESS.rawValue && rc != MOSQ_ERR_NO_CONN.rawValue {
            connectionEnded(connectionError(rc))
            return
        }
        flush()
    }

    /// The earliest instant `tick` has something to do.
    var nextDeadline: ContinuousClock.Instant? {
        var next: ContinuousClock.Instant?
        switch phase {
        case .waitingRetry(let at), .disconnecting(let at): next = at
        default: break
        }
        for waiter in connectWaiters where next == nil || waiter.deadline < next! {
            next = waiter.deadline
        }
        return next
    }

    func tick(now: ContinuousClock.Instant) {
        switch phase {
        case .waitingRetry(let at) where at <= now:
            startAttempt(first: false)
        case .disconnecting(let deadline) where deadline <= now:
            logger.debug("DISCONNECT not flushed in time; closing")
            abortSocket()
            finishClose(reason: "the client was disconnected")
        default:
            break
        }
        guard connectWaiters.contains(where: { $0.deadline <= now }) else { return }
        var expired: [Completion<Void>] = []
        connectWaiters.removeAll { waiter in
            guard waiter.deadline <= now else { return false }
            expired.append(waiter.completion)
            return true
        }
        var message = "no accepted CONNACK from \(endpoint) in time"
        if let lastError {
            message += "; last error: \(lastError.message)"
        }
        let error = MosquittoError(code: MOSQ_ERR_TIMEOUT.rawValue, operation: "connect", message: message)
        for completion in expired {
            completion.fail(error)
        }
        if connectWaiters.isEmpty && !announced {
            logger.warning("connect timed out", metadata: ["mqtt.error": "\(error.message)"])
            goIdle(error, abort: true)
        }
    }

    // MARK: - Connection state machine

    func connect(_ completion: Completion<Void>, timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        switch phase {
        case .closed, .disconnecting:
            completion.fail(MosquittoError.notConnected("connect", "the client was disconnected; create a new client"))
        case .connected where announced:
            completion.succeed()
        case .connecting, .waitingRetry, .connected:
            connectWaiters.append((completion, deadline))
        case .idle:
            do {
                try ensureHandle()
            } catch {
                completion.fail(error)
                return
            }
            connectWaiters.append((completion, deadline))
            attempt = 0
            lastError = nil
            startAttempt(first: true)
        }
    }

    private func startAttempt(first: Bool) {
        guard let mosq else { return }
        phase = .connecting
        logger.debug("connecting", metadata: ["mqtt.broker": "\(endpoint)", "mqtt.attempt": "\(attempt)"])
        let rc =
            first
            ? mosquitto_connect_async(mosq, options.host, Int32(clamping: options.port), Int32(clamping: options.keepAlive))
            : mosquitto_reconnect_async(mosq)
        if rc == MOSQ_ERR_INVAL.rawValue || rc == MOSQ_ERR_NOT_SUPPORTED.rawValue {
            // A configuration error (e.g. keepAlive 1...4, empty host): retrying cannot help.
            let reason = MosquittoError(rc: rc, operation: "connect").message
            goIdle(
                MosquittoError(
                    code: rc, operation: "connect",
                    message: "\(reason) Check host, port (1...65535) and keepAlive (0 or >= 5)."),
                abort: false)
        } else if rc != MOSQ_ERR_SUCCESS.rawValue {
            connectionEnded(connectionError(rc))
        }
    }

    private func connectionError(_ rc: Int32) -> MosquittoError {
        let base = MosquittoError(rc: rc, operation: "connection")
        let text: String
        switch rc {
        case MOSQ_ERR_KEEPALIVE.rawValue: text = "no answer from \(endpoint) within the keep-alive interval"
        case MOSQ_ERR_CONN_LOST.rawValue: text = "connection to \(endpoint) lost"
        default: text = "\(endpoint): \(base.message)"
        }
        return MosquittoError(code: rc, operation: "connection", message: text)
    }

    /// The current connection or attempt is over. Idempotent: only acts while
    /// the socket is active.
    private func connectionEnded(_ error: MosquittoError?) {
        switch phase {
        case .disconnecting:
            finishClose(reason: "the client was disconnected")
            return
        case .connecting, .connected:
            break
        case .idle, .waitingRetry, .closed:
            return
        }
        let wasAnnounced = announced
        announced = false
        status.connected.store(false, ordering: .releasing)
        releaseWriteWaiters()
        subscribeMids.removeAll()
        unsubscribeMids.removeAll()
        resubscribeMids.removeAll()
        // Keep the CONNACK refusal: the on_disconnect that follows it says less.
        if let error, lastError?.connackCode == nil || error.code != MOSQ_ERR_CONN_REFUSED.rawValue {
            lastError = error
        }
        if wasAnnounced {
            logger.warning("connection lost", metadata: ["mqtt.error": "\(error?.message ?? "closed")"])
            events.yield(.disconnected(error))
        } else {
            logger.debug("connection attempt failed", metadata: ["mqtt.error": "\(error?.message ?? "closed")"])
        }
        if !connectWaiters.isEmpty || (autoReconnect && options.reconnect.isEnabled) {
            let policy = options.reconnect.isEnabled ? options.reconnect : ReconnectPolicy.connectRetry
            let delay = policy.delay(attempt: attempt)
            attempt += 1
            phase = .waitingRetry(.now + delay)
        } else {
            goIdle(error ?? connectionError(MOSQ_ERR_CONN_LOST.rawValue), abort: false)
        }
    }

    /// Stops trying; everything waiting for a connection fails.
    private func goIdle(_ error: MosquittoError, abort: Bool) {
        if abort {
            abortSocket()
        }
        phase = .idle
        announced = false
        autoReconnect = false
        status.connected.store(false, ordering: .releasing)
        failWaiters(error)
    }

    private func failWaiters(_ error: MosquittoError) {
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
    private func abortSocket() {
        let fd = socket
        if fd >= 0 {
            _ = shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    // MARK: libmosquitto callbacks

    private func didConnect(rc: Int32, flags: Int32) {
        guard case .connecting = phase, let mosq else { return }
        if rc != 0 {
            let error = MosquittoError.refused(connack: rc, host: options.host, port: options.port)
            lastError = error
            logger.error("broker refused the connection", metadata: ["mqtt.error": "\(error.message)"])
            if !connectWaiters.isEmpty {
                // A refusal answers connect(): retrying cannot fix credentials.
                goIdle(error, abort: false)
            }
            // Otherwise on_disconnect follows and schedules the next attempt.
            return
        }
        phase = .connected
        attempt = 0
        let sessionPresent = flags & 1 != 0

        for filter in pendingUnsubscribes.keys {
            var mid: Int32 = 0
            let rc = mosquitto_unsubscribe(mosq, &mid, filter)
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                unsubscribeMids[mid] = filter
            }
        }
        for subscription in subscriptions {
            var mid: Int32 = 0
            let rc = mosquitto_subscribe(mosq, &mid, subscription.filter, subscription.qos.rawValue)
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                subscribeMids[mid] = subscription.filter
                resubscribeMids.insert(mid)
            } else {
                logger.error(
                    "re-subscribe failed",
                    metadata: ["mqtt.filter": "\(subscription.filter)", "mqtt.error": "\(MosquittoError(rc: rc, operation: "subscribe"))"])
            }
        }
        if resubscribeMids.isEmpty {
            announce(sessionPresent: sessionPresent)
        } else {
            pendingSessionPresent = sessionPresent
        }
    }

    private func announce(sessionPresent: Bool) {
        announced = true
        autoReconnect = true
        lastError = nil
        reportedNoWaitFailure = false
        status.connected.store(true, ordering: .releasing)
        logger.info(
            "connected",
            metadata: ["mqtt.broker": "\(endpoint)", "mqtt.session_present": "\(sessionPresent)",
                       "mqtt.subscriptions": "\(subscriptions.count)"])
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

    private func didDisconnect(rc: Int32) {
        connectionEnded(rc == 0 ? nil : connectionError(rc))
    }

    /// PUBACK of a QoS 1 publish, or a QoS 0 publish written to the socket.
    private func didPublish(mid: Int32) {
        if let waiter = publishWaiters.removeValue(forKey: mid) {
            waiter.succeed()
        } else if let written = writeWaiters.removeValue(forKey: mid) {
            written(true)
        } else {
            writtenDuringPublish?.insert(mid)
        }
    }

    /// Batches whose packets libmosquitto dropped with the connection are not written.
    private func releaseWriteWaiters() {
        let waiters = writeWaiters
        writeWaiters.removeAll()
        for waiter in waiters.values { waiter(false) }
    }

    private func didReceive(_ message: mosquitto_message) {
        let topic = String(cString: message.topic)
        let payload: [UInt8]
        if let bytes = message.payload, message.payloadlen > 0 {
            payload = Array(UnsafeRawBufferPointer(start: bytes, count: Int(message.payloadlen)))
        } else {
            payload = []
        }
        inbox.append(
            MosquittoMessage(
                topic: topic, payload: payload, qos: QoS(rawValue: min(message.qos, 1)) ?? .atLeastOnce,
                retain: message.retain))
    }

    private func didSubscribe(mid: Int32, granted: Int32?) {
        guard let filter = subscribeMids.removeValue(forKey: mid) else { return }
        let waiters = subscribeWaiters.removeValue(forKey: filter) ?? []
        if let granted, granted < 0x80 {
            for completion in waiters { completion.succeed() }
        } else {
            let error = MosquittoError(
                code: MOSQ_ERR_ACL_DENIED.rawValue, operation: "subscribe",
                message: "broker rejected the subscription to \(filter); check the broker's ACL")
            logger.error("subscription rejected", metadata: ["mqtt.filter": "\(filter)"])
            for completion in waiters { completion.fail(error) }
        }
        if resubscribeMids.remove(mid) != nil && resubscribeMids.isEmpty && !announced {
            announce(sessionPresent: pendingSessionPresent)
        }
    }

    private func didUnsubscribe(mid: Int32) {
        guard let filter = unsubscribeMids.removeValue(forKey: mid) else { return }
        for completion in pendingUnsubscribes.removeValue(forKey: filter) ?? [] {
            completion.succeed()
        }
    }

    private func didLog(level: Int32, text: String) {
        switch level {
        case CMOSQUITTO_LOG_ERR: logger.error("libmosquitto: \(text)")
        case CMOSQUITTO_LOG_WARNING: logger.warning("libmosquitto: \(text)")
        case CMOSQUITTO_LOG_DEBUG: logger.trace("libmosquitto: \(text)")
        default: logger.debug("libmosquitto: \(text)")
        }
    }

    // MARK: - Commands

    func subscribe(_ filter: String, qos: QoS, _ completion: Completion<Void>) {
        guard checkUsable("subscribe", completion) else { return }
        let rc = mosquitto_sub_topic_check(filter)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            completion.fail(
                MosquittoError(code: rc, operation: "subscribe", message: "invalid topic filter \"\(filter)\""))
            return
        }
        if let index = subscriptions.firstIndex(where: { $0.filter == filter }) {
            subscriptions[index].qos = qos
        } else {
            subscriptions.append((filter, qos))
        }
        subscribeWaiters[filter, default: []].append(completion)
        // Not connected yet: the subscription goes out with the re-subscriptions on CONNACK.
        guard case .connected = phase, let mosq else { return }
        var mid: Int32 = 0
        let sent = mosquitto_subscribe(mosq, &mid, filter, qos.rawValue)
        if sent == MOSQ_ERR_SUCCESS.rawValue {
            subscribeMids[mid] = filter
            flush()
        } else if !Self.isConnectionFailure(sent) {
            subscriptions.removeAll { $0.filter == filter }
            let error = MosquittoError(rc: sent, operation: "subscribe \(filter)")
            for completion in subscribeWaiters.removeValue(forKey: filter) ?? [] { completion.fail(error) }
        }
    }

    func unsubscribe(_ filter: String, _ completion: Completion<Void>) {
        guard checkUsable("unsubscribe", completion) else { return }
        subscriptions.removeAll { $0.filter == filter }
        // A subscribe still waiting for its SUBACK is overtaken by this unsubscribe.
        for waiter in subscribeWaiters.removeValue(forKey: filter) ?? [] { waiter.succeed() }
        pendingUnsubscribes[filter, default: []].append(completion)
        guard case .connected = phase, let mosq else { return }
        var mid: Int32 = 0
        let sent = mosquitto_unsubscribe(mosq, &mid, filter)
        if sent == MOSQ_ERR_SUCCESS.rawValue {
            unsubscribeMids[mid] = filter
            flush()
        } else if !Self.isConnectionFailure(sent) {
            let error = MosquittoError(rc: sent, operation: "unsubscribe \(filter)")
            for completion in pendingUnsubscribes.removeValue(forKey: filter) ?? [] { completion.fail(error) }
        }
    }

    /// `completion` nil: fire-and-forget (`publishNoWait`), failures are counted.
    func publish<Payload: Collection<UInt8> & Sendable>(
        topic: String, payload: Payload, qos: QoS, retain: Bool, _ completion: Completion<Void>?
    ) {
        switch phase {
        case .closed, .disconnecting:
            publishFailed(MosquittoError.notConnected("publish", "the client was disconnected"), completion)
        case .idle:
            publishFailed(MosquittoError.notConnected("publish", "not connected to \(endpoint); call connect() first"), completion)
        case .connected where announced:
            sendPublish(topic: topic, payload: payload, qos: qos, retain: retain, completion)
        case .connecting, .waitingRetry, .connected:
            if let completion {
                parked.append((completion, { [unowned self] in
                    self.sendPublish(topic: topic, payload: payload, qos: qos, retain: retain, completion)
                }))
            } else {
                // Parking fire-and-forget traffic would make memory unbounded during an outage.
                publishFailed(MosquittoError.notConnected("publish", "not connected to \(endpoint) (reconnecting)"), nil)
            }
        }
    }

    /// Returns the mid when libmosquitto took the message.
    @discardableResult
    private func sendPublish<Payload: Collection<UInt8>>(
        topic: String, payload: Payload, qos: QoS, retain: Bool, _ completion: Completion<Void>?
    ) -> Int32? {
        guard let mosq else { return nil }
        var mid: Int32 = 0
        let rc: Int32 =
            payload.withContiguousStorageIfAvailable { bytes in
                Self.publish(mosq, &mid, topic, UnsafeRawBufferPointer(bytes), qos, retain)
            } ?? Array(payload).withUnsafeBytes { bytes in
                Self.publish(mosq, &mid, topic, bytes, qos, retain)
            }
        defer { flush() }
        if rc == MOSQ_ERR_SUCCESS.rawValue {
            if qos == .atLeastOnce, let completion {
                publishWaiters[mid] = completion
            } else {
                completion?.succeed()
            }
            return mid
        } else if qos == .atLeastOnce && mid != 0 && rc != MOSQ_ERR_NOMEM.rawValue {
            // libmosquitto queued it before the write failed and resends it after
            // reconnecting; PUBACK then completes the waiter (or the loss fails it).
            if let completion {
                publishWaiters[mid] = completion
            }
        } else {
            publishFailed(MosquittoError(rc: rc, operation: "publish to \(topic)"), completion)
        }
        return nil
    }

    /// Publishes a batch at QoS 0 and calls `written(true)` once its last packet was
    /// written to the socket (on_publish; packets leave in order), `written(false)` when
    /// it cannot be: not connected, refused, or dropped with the connection.
    func publishBatch<Payload: Collection<UInt8> & Sendable>(
        _ messages: [(topic: String, payload: Payload)], written: @escaping @Sendable (Bool) -> Void
    ) {
        guard case .connected = phase, announced, !messages.isEmpty else {
            for message in messages { publish(topic: message.topic, payload: message.payload, qos: .atMostOnce, retain: false, nil) }
            return written(false)
        }
        writtenDuringPublish = []
        defer { writtenDuringPublish = nil }
        var last: Int32?
        for message in messages {
            last = sendPublish(topic: message.topic, payload: message.payload, qos: .atMostOnce, retain: false, nil)
        }
        guard let last, case .connected = phase else { return written(false) }
        if writtenDuringPublish?.contains(last) == true {
            written(true)
        } else {
            writeWaiters[last] = written
        }
    }

    private static func publish(
        _ mosq: OpaquePointer, _ mid: inout Int32, _ topic: String, _ bytes: UnsafeRawBufferPointer, _ qos: QoS,
        _ retain: Bool
    ) -> Int32 {
        // MQTT's limit; also keeps the Int32 length exact.
        guard bytes.count <= 268_435_455 else { return MOSQ_ERR_PAYLOAD_SIZE.rawValue }
        return mosquitto_publish(mosq, &mid, topic, Int32(bytes.count), bytes.baseAddress, qos.rawValue, retain)
    }

    private func publishFailed(_ error: MosquittoError, _ completion: Completion<Void>?) {
        if let completion {
            completion.fail(error)
            return
        }
        status.failedPublishes.add(1, ordering: .relaxed)
        if !reportedNoWaitFailure {
            reportedNoWaitFailure = true
            logger.warning("publishNoWait failed; further failures are only counted until reconnected",
                           metadata: ["mqtt.error": "\(error)"])
        } else {
            logger.trace("publishNoWait failed", metadata: ["mqtt.error": "\(error)"])
        }
    }

    private func checkUsable(_ operation: String, _ completion: Completion<Void>) -> Bool {
        switch phase {
        case .closed, .disconnecting:
            completion.fail(MosquittoError.notConnected(operation, "the client was disconnected"))
            return false
        case .idle:
            completion.fail(MosquittoError.notConnected(operation, "not connected to \(endpoint); call connect() first"))
            return false
        default:
            return true
        }
    }

    private static func isConnectionFailure(_ rc: Int32) -> Bool {
        rc == MOSQ_ERR_NO_CONN.rawValue || rc == MOSQ_ERR_CONN_LOST.rawValue || rc == MOSQ_ERR_ERRNO.rawValue
    }

    /// Test and simulator hook: the TCP connection ends without DISCONNECT, so
    /// the broker publishes the will; the reconnect policy applies as for a real loss.
    func simulateNetworkDrop() {
        guard case .connected = phase, socket >= 0 else { return }
        abortSocket()
        connectionEnded(
            MosquittoError(
                code: MOSQ_ERR_CONN_LOST.rawValue, operation: "connection",
                message: "connection to \(endpoint) dropped (simulated)"))
    }

    func disconnect(_ completion: Completion<Void>) {
        switch phase {
        case .closed:
            completion.succeed()
        case .disconnecting:
            disconnectWaiters.append(completion)
        case .connected:
            disconnectWaiters.append(completion)
            sendDisconnect()
        case .idle, .connecting, .waitingRetry:
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
        phase = .disconnecting(.now + Self.disconnectGrace)
        // Written at once when the socket is writable; on_disconnect(0) then runs inside this call.
        let rc = mosquitto_disconnect(mosq)
        if case .disconnecting = phase {
            if rc != MOSQ_ERR_SUCCESS.rawValue || mosquitto_socket(mosq) < 0 {
                finishClose(reason: "the client was disconnected")
            } else {
                flush()
            }
        }
    }

    /// The owner is gone or the loop shuts down: DISCONNECT if it can be sent
    /// now, then close.
    func close(reason: String) {
        if case .connected = phase, let mosq {
            phase = .disconnecting(.now)
            _ = mosquitto_disconnect(mosq)
        }
        finishClose(reason: reason)
    }

    private func finishClose(reason: String) {
        if case .closed = phase { return }
        let wasConnected = announced
        phase = .closed
        announced = false
        autoReconnect = false
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
