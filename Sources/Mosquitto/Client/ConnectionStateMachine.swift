import CMosquitto

/// The connection lifecycle of one client, apart from libmosquitto: which phase the
/// connection is in, when to retry, which subscriptions to send again, and what a
/// request means in each phase. Event methods change the state and return what the
/// caller (``ClientCore``, on the loop thread) must do with libmosquitto and the
/// waiting operations; nothing here calls C or reads the clock (time is passed in), so
/// the tests drive it without a broker. Model: swift-nio's
/// `ProtocolNegotiationHandlerStateMachine`.
struct ConnectionStateMachine {
    typealias Instant = ContinuousClock.Instant

    enum Phase: Equatable {
        /// Not connected and not trying to.
        case idle
        /// An attempt is in flight: TCP, TLS, CONNECT/CONNACK.
        case connecting
        /// Next attempt at the given instant (backoff).
        case waitingRetry(Instant)
        /// CONNACK accepted. ``isAnnounced`` once re-subscriptions are acknowledged.
        case connected
        /// DISCONNECT sent; closes on `on_disconnect` or at the deadline.
        case disconnecting(Instant)
        /// Terminal; the handle is destroyed.
        case closed
    }

    /// "host:port", for messages.
    let endpoint: String
    let reconnect: ReconnectPolicy
    /// How long a DISCONNECT may take to flush.
    let disconnectGrace: Duration

    private(set) var phase = Phase.idle
    /// `.connected` was emitted for the current connection.
    private(set) var isAnnounced = false
    /// Reconnect after a loss: the client has been connected since `connect()`.
    private(set) var autoReconnect = false
    /// Attempts of the current series, for the backoff.
    private(set) var attempt = 0
    /// Why the last attempt failed, for the connect timeout's message.
    private(set) var lastError: MosquittoError?
    /// Remembered subscriptions, re-sent after every (re)connect, in order.
    private(set) var subscriptions: [(filter: String, qos: QoS)] = []
    /// Message IDs of the re-subscriptions not yet acknowledged.
    private var resubscribeMids: Set<Int32> = []
    /// CONNACK's session-present flag, announced once the re-subscriptions are acknowledged.
    private var pendingSessionPresent = false

    init(endpoint: String, reconnect: ReconnectPolicy, disconnectGrace: Duration = .seconds(2)) {
        self.endpoint = endpoint
        self.reconnect = reconnect
        self.disconnectGrace = disconnectGrace
    }

    // MARK: - Derived state

    /// The socket is ours to poll only in these phases.
    var isSocketActive: Bool {
        switch phase {
        case .connecting, .connected, .disconnecting: true
        case .idle, .waitingRetry, .closed: false
        }
    }

    var isConnected: Bool { phase == .connected }
    var isDisconnecting: Bool { if case .disconnecting = phase { true } else { false } }

    /// The earliest instant ``tick(now:)`` has something to do.
    var nextDeadline: Instant? {
        switch phase {
        case .waitingRetry(let at), .disconnecting(let at): at
        default: nil
        }
    }

    /// Why an operation other than publish cannot start now, or `nil` when it can
    /// (it may wait for the connection).
    func refusal(of operation: String) -> MosquittoError? {
        switch phase {
        case .closed, .disconnecting: MosquittoError.notConnected(operation, "the client was disconnected")
        case .idle: MosquittoError.notConnected(operation, "not connected to \(endpoint); call connect() first")
        default: nil
        }
    }

    // MARK: - Connecting

    enum ConnectAction: Equatable {
        /// Already connected.
        case succeed
        /// Closed for good.
        case fail(reason: String)
        /// An attempt is under way: wait for its outcome.
        case wait
        /// Create the handle if needed, wait, and start the first attempt.
        case startFirstAttempt
    }

    mutating func connectRequested() -> ConnectAction {
        switch phase {
        case .closed, .disconnecting:
            return .fail(reason: "the client was disconnected; create a new client")
        case .connected where isAnnounced:
            return .succeed
        case .connecting, .waitingRetry, .connected:
            return .wait
        case .idle:
            attempt = 0
            lastError = nil
            return .startFirstAttempt
        }
    }

    /// `mosquitto_connect_async` or `mosquitto_reconnect_async` is about to run.
    mutating func attemptStarting() {
        phase = .connecting
    }

    enum TickAction: Equatable {
        case none
        /// The backoff passed: `mosquitto_reconnect_async`.
        case reconnect
        /// The DISCONNECT did not flush in time: cut the socket and close.
        case closeAfterGrace
    }

    mutating func tick(now: Instant) -> TickAction {
        switch phase {
        case .waitingRetry(let at) where at <= now: .reconnect
        case .disconnecting(let deadline) where deadline <= now: .closeAfterGrace
        default: .none
        }
    }

    /// Connect waiters timed out. Returns the error to fail them with, and whether to stop
    /// trying (no waiter is left and the connection never came up): then the state is
    /// idle and the caller cuts the socket and fails everything waiting.
    mutating func connectTimedOut(waitersLeft: Bool) -> (error: MosquittoError, stop: Bool) {
        var message = "no accepted CONNACK from \(endpoint) in time"
        if let lastError {
            message += "; last error: \(lastError.message)"
        }
        let error = MosquittoError(code: MOSQ_ERR_TIMEOUT.rawValue, operation: "connect", message: message)
        guard !waitersLeft && !isAnnounced else { return (error, false) }
        stop()
        return (error, true)
    }

    // MARK: - CONNACK and re-subscriptions

    /// The broker refused the CONNECT. Returns `true` when the caller must stop and fail
    /// what waits: a refusal answers `connect()`, and retrying cannot fix credentials.
    /// Otherwise `on_disconnect` follows and schedules the next attempt.
    mutating func connackRefused(_ error: MosquittoError, connectWaiting: Bool) -> Bool {
        lastError = error
        if connectWaiting { stop() }
        return connectWaiting
    }

    /// CONNACK 0. Returns the subscriptions to send again; the caller reports their mids
    /// with ``resubscriptionsSent(mids:sessionPresent:)``.
    mutating func connackAccepted() -> [(filter: String, qos: QoS)] {
        phase = .connected
        attempt = 0
        return subscriptions
    }

    /// Returns `true` when the connection can be announced now (nothing to wait for).
    mutating func resubscriptionsSent(mids: Set<Int32>, sessionPresent: Bool) -> Bool {
        resubscribeMids = mids
        pendingSessionPresent = sessionPresent
        return mids.isEmpty
    }

    /// A SUBACK arrived. Returns the session-present flag to announce with when it was
    /// the last re-subscription the announcement waited for.
    mutating func subackReceived(mid: Int32) -> Bool? {
        guard resubscribeMids.remove(mid) != nil, resubscribeMids.isEmpty, !isAnnounced else { return nil }
        return pendingSessionPresent
    }

    /// The connection is up and re-subscribed: callers waiting for it proceed.
    mutating func announce() {
        isAnnounced = true
        autoReconnect = true
        lastError = nil
    }

    // MARK: - Subscriptions

    mutating func remember(_ filter: String, qos: QoS) {
        if let index = subscriptions.firstIndex(where: { $0.filter == filter }) {
            subscriptions[index].qos = qos
        } else {
            subscriptions.append((filter, qos))
        }
    }

    mutating func forget(_ filter: String) {
        subscriptions.removeAll { $0.filter == filter }
    }

    // MARK: - Losing the connection

    enum EndAction: Equatable {
        /// Nothing was connected or connecting.
        case none
        /// A DISCONNECT of ours completed: close.
        case finishClose
        /// Try again at `at`; `wasAnnounced` tells whether `.disconnected` is due.
        case retry(at: Instant, wasAnnounced: Bool)
        /// Stop trying and fail what waits with `error` (`nil`: the caller's "connection lost").
        case stop(MosquittoError?, wasAnnounced: Bool)
    }

    /// The current connection or attempt is over (`error` nil: closed cleanly).
    mutating func connectionEnded(_ error: MosquittoError?, connectWaiting: Bool, now: Instant) -> EndAction {
        switch phase {
        case .disconnecting: return .finishClose
        case .connecting, .connected: break
        case .idle, .waitingRetry, .closed: return .none
        }
        let wasAnnounced = isAnnounced
        isAnnounced = false
        resubscribeMids.removeAll()
        // Keep the CONNACK refusal: the on_disconnect that follows it says less.
        if let error, lastError?.connackCode == nil || error.code != MOSQ_ERR_CONN_REFUSED.rawValue {
            lastError = error
        }
        guard connectWaiting || (autoReconnect && reconnect.isEnabled) else {
            stop()
            return .stop(error, wasAnnounced: wasAnnounced)
        }
        let policy = reconnect.isEnabled ? reconnect : ReconnectPolicy.connectRetry
        let at = now + policy.delay(attempt: attempt)
        attempt += 1
        phase = .waitingRetry(at)
        return .retry(at: at, wasAnnounced: wasAnnounced)
    }

    /// Stops trying: idle until the next `connect()`.
    mutating func stop() {
        phase = .idle
        isAnnounced = false
        autoReconnect = false
        resubscribeMids.removeAll()
    }

    // MARK: - Disconnecting

    enum DisconnectAction: Equatable {
        /// Already closed.
        case succeed
        /// A DISCONNECT is on its way: wait for the close.
        case wait
        /// Send DISCONNECT and wait for the close.
        case sendDisconnect
        /// No connection to say goodbye on: cut the socket and close now.
        case closeNow
    }

    mutating func disconnectRequested(now: Instant) -> DisconnectAction {
        switch phase {
        case .closed: return .succeed
        case .disconnecting: return .wait
        case .connected:
            phase = .disconnecting(now + disconnectGrace)
            return .sendDisconnect
        case .idle, .connecting, .waitingRetry: return .closeNow
        }
    }

    /// The owner is gone or the loop shuts down. Returns `true` when a DISCONNECT can be
    /// tried first.
    mutating func closeRequested(now: Instant) -> Bool {
        guard phase == .connected else { return false }
        phase = .disconnecting(now)
        return true
    }

    /// Enters the terminal phase. Returns `nil` when already closed, else whether the
    /// connection was announced (then `.disconnected` is due).
    mutating func close() -> Bool? {
        if phase == .closed { return nil }
        let wasAnnounced = isAnnounced
        phase = .closed
        isAnnounced = false
        autoReconnect = false
        return wasAnnounced
    }

    // MARK: - Publishing

    enum PublishAction: Equatable {
        case send
        /// Wait for the connection (only publishes with a waiter: parking fire-and-forget
        /// traffic would make memory unbounded during an outage).
        case park
        case fail(MosquittoError)
    }

    func publishRequested(waits: Bool) -> PublishAction {
        switch phase {
        case .closed, .disconnecting:
            .fail(MosquittoError.notConnected("publish", "the client was disconnected"))
        case .idle:
            .fail(MosquittoError.notConnected("publish", "not connected to \(endpoint); call connect() first"))
        case .connected where isAnnounced:
            .send
        case .connecting, .waitingRetry, .connected:
            waits ? .park : .fail(MosquittoError.notConnected("publish", "not connected to \(endpoint) (reconnecting)"))
        }
    }
}
