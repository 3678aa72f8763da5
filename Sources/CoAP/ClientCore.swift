import CCoAP
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
import LoopSupport
#endif

/// The part of a ``CoAPClient`` that lives on its event loop's thread: the
/// libcoap context, its sessions and the exchanges waiting for responses.
///
/// `@unchecked Sendable`: after `init` every method runs on `loop`'s thread,
/// from a command or a libcoap callback; other threads only use `makeID()`.
final class ClientCore: LoopMember, @unchecked Sendable {
    enum Waiter {
        case single(Completion<CoAPClientResponse>)
        case observation(ObservationSink)

        /// The caller gave up before the exchange started.
        var isAbandoned: Bool {
            switch self {
            case .single(let completion): completion.isDone
            case .observation(let sink): sink.isTerminated
            }
        }
    }

    /// A response is matched by libcoap session and token.
    private struct TokenKey: Hashable {
        let session: OpaquePointer
        let token: [UInt8]
    }

    private struct Exchange {
        let session: UInt64
        let key: TokenKey
        let waiter: Waiter
        /// Until the (first) response; `nil` once an observation is established.
        var deadline: ContinuousClock.Instant?
        let operation: String
    }

    /// One peer and its credentials; the libcoap session is replaced after a DTLS failure.
    private final class SessionState {
        let id: UInt64
        let endpoint: ResolvedEndpoint
        let security: CoAPClient.Security
        var handle: OpaquePointer?
        var failed = false
        /// libcoap keeps pointing at the PSK identity and key while the session lives.
        let identity: UnsafeMutableBufferPointer<UInt8>?
        let key: UnsafeMutableBufferPointer<UInt8>?

        init(id: UInt64, endpoint: ResolvedEndpoint, security: CoAPClient.Security) {
            self.id = id
            self.endpoint = endpoint
            self.security = security
            if case .psk(let identity, let key) = security {
                self.identity = Self.copy(Array(identity.utf8))
                self.key = Self.copy(key)
            } else {
                self.identity = nil
                self.key = nil
            }
        }

        deinit {
            identity?.deallocate()
            key?.deallocate()
        }

        private static func copy(_ bytes: [UInt8]) -> UnsafeMutableBufferPointer<UInt8> {
            let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(bytes.count, 1))
            _ = buffer.initialize(from: bytes)
            return UnsafeMutableBufferPointer(rebasing: buffer[0..<bytes.count])
        }
    }

    /// COAP_DTLS_MAX_PSK in 4.3.1.
    static let maxPSKLength = 64

    let logger: Logger
    let references: LibcoapReferences
    let loop: CoAPEventLoop
    private let ids = Atomic<UInt64>(0)

    private var context: OpaquePointer?
    private var contextReference: Unmanaged<ClientCore>?
    private(set) var pollFD: Int32 = -1
    private var closed = false
    private var sessions: [UInt64: SessionState] = [:]
    private var sessionIDs: [OpaquePointer: UInt64] = [:]
    private let blockTransfers: CoAPClient.BlockTransfers
    private var exchanges: [UInt64: Exchange] = [:]
    private var exchangeIDs: [TokenKey: UInt64] = [:]
    /// Observations cancelled here, until the server's answer to the deregistering GET
    /// (or a notification already on its way) is in: acknowledged, not reset.
    private var cancelledObservations: [TokenKey: ContinuousClock.Instant] = [:]
    /// When the oldest entry of `cancelledObservations` expires: `process` (every loop
    /// iteration) only prunes then.
    private var cancelledPruneAt: ContinuousClock.Instant?

    init(logger: Logger, references: LibcoapReferences, loop: CoAPEventLoop, blockTransfers: CoAPClient.BlockTransfers) {
        self.logger = logger
        self.references = references
        self.loop = loop
        self.blockTransfers = blockTransfers
    }

    /// A process-unique ID for a session or exchange. Any thread.
    func makeID() -> UInt64 {
        ids.add(1, ordering: .relaxed).newValue
    }

    // MARK: - Context

    private func ensureContext(_ operation: String) throws(CoAPError) -> OpaquePointer {
        if let context {
            return context
        }
        guard !closed else { throw .notRunning(operation, "the client is shut down") }
        let context = try CoAPError.check(
            coap_new_context(nil), .libraryFailure, operation,
            "coap_new_context failed; the process may be out of memory")
        let reference = references.retain(self)
        coap_set_app_data(context, reference.toOpaque())
        if blockTransfers == .byLibcoap {
            coap_context_set_block_mode(context, UInt8(COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY))
        }
        coap_register_response_handler(context, clientResponseHandler)
        coap_register_nack_handler(context, clientNackHandler)
        coap_register_event_handler(context, clientEventHandler)
        let fd = coap_context_get_coap_fd(context)
        guard fd >= 0 else {
            coap_free_context(context)
            references.release(reference)
            throw CoAPError(
                code: .libraryFailure, operation: operation,
                message:
                    "libcoap is built without epoll support, which the event loop needs; install Debian's libcoap3")
        }
        self.context = context
        contextReference = reference
        pollFD = fd
        loop.core.add(self)
        return context
    }

    /// Fails everything, releases the sessions and frees the context. Loop
    /// thread, outside libcoap callbacks. Idempotent.
    func close() {
        closed = true
        let error = CoAPError.notRunning("request", "the client is shut down")
        for id in Array(exchanges.keys) {
            finish(id, .failure(error))
        }
        for state in sessions.values {
            release(state)
        }
        sessions.removeAll()
        loop.core.remove(self)
        pollFD = -1
        if let context {
            self.context = nil
            coap_free_context(context)
        }
        if let contextReference {
            self.contextReference = nil
            references.release(contextReference)
        }
    }

    func loopDidShutDown() {
        close()
    }

    // MARK: - Sessions

    func openSession(
        _ id: UInt64, endpoint: ResolvedEndpoint, security: CoAPClient.Security, _ completion: Completion<Void>
    ) {
        do throws(CoAPError) {
            let state = SessionState(id: id, endpoint: endpoint, security: security)
            try connect(state, "session")
            sessions[id] = state
            completion.succeed(())
        } catch {
            completion.fail(error)
        }
    }

    private func connect(_ state: SessionState, _ operation: String) throws(CoAPError) {
        let context = try ensureContext(operation)
        var address = state.endpoint.address
        let handle: OpaquePointer?
        switch state.security {
        case .none:
            handle = coap_new_client_session(context, nil, &address, COAP_PROTO_UDP)
        case .psk:
            guard coap_dtls_is_supported() != 0 else {
                throw CoAPError(
                    code: .dtlsUnavailable, operation: operation,
                    message: "this libcoap has no DTLS support; link libcoap-3-openssl or use Security.none")
            }
            var setup = coap_dtls_cpsk_t()
            setup.version = UInt8(COAP_DTLS_CPSK_SETUP_VERSION)
            if let identity = state.identity, let key = state.key {
                setup.psk_info.identity = coap_bin_const_t(length: identity.count, s: identity.baseAddress)
                setup.psk_info.key = coap_bin_const_t(length: key.count, s: key.baseAddress)
            }
            handle = coap_new_client_session_psk2(context, nil, &address, COAP_PROTO_DTLS, &setup)
        }
        let session = try CoAPError.check(
            handle, .libraryFailure, operation,
            "libcoap could not create a session to \(state.endpoint.description); see the log for the reason")
        // The session's socket, like every libcoap descriptor, lacks close-on-exec; see the shim.
        _ = ccoap_set_cloexec(pollFD)
        state.handle = session
        state.failed = false
        sessionIDs[session] = state.id
    }

    /// Releases the libcoap session (libcoap cancels its observations). Outside callbacks.
    private func release(_ state: SessionState) {
        guard let handle = state.handle else { return }
        state.handle = nil
        sessionIDs[handle] = nil
        coap_session_release(handle)
    }

    func closeSession(_ id: UInt64) {
        guard let state = sessions.removeValue(forKey: id) else { return }
        let error = CoAPError.notRunning("request", "the session to \(state.endpoint.description) is closed")
        for (exchangeID, exchange) in exchanges where exchange.session == id {
            finish(exchangeID, .failure(error))
        }
        release(state)
    }

    // MARK: - Exchanges

    func start(
        _ request: CoAPClientRequest, exchange id: UInt64, session sessionID: UInt64, waiter: Waiter, timeout: Duration
    ) {
        let operation = "\(request.method) \(request.path)"
        guard !waiter.isAbandoned else { return }
        guard let state = sessions[sessionID] else {
            Self.finish(waiter, .failure(CoAPError.notRunning(operation, "the session is closed")))
            return
        }
        do throws(CoAPError) {
            if state.failed || state.handle == nil {
                release(state)
                try connect(state, operation)
            }
            guard let session = state.handle else { return }
            let isObservation: Bool
            if case .observation = waiter { isObservation = true } else { isObservation = false }
            let (pdu, token) = try makePDU(request, session: session, observe: isObservation, operation: operation)
            let key = TokenKey(session: session, token: token)
            exchanges[id] = Exchange(
                session: sessionID, key: key, waiter: waiter, deadline: .now + timeout, operation: operation)
            exchangeIDs[key] = id
            // coap_send takes the PDU, also on failure.
            if coap_send(session, pdu) == COAP_INVALID_MID {
                finish(
                    id,
                    .failure(
                        CoAPError(
                            code: .sendFailed, operation: operation,
                            message: "libcoap could not send the request; see the log for the reason")))
            }
        } catch {
            Self.finish(waiter, .failure(error))
        }
    }

    private func makePDU(_ request: CoAPClientRequest, session: OpaquePointer, observe: Bool, operation: String)
        throws(CoAPError) -> (OpaquePointer, [UInt8])
    {
        let code = coap_pdu_code_t(rawValue: UInt32(request.method.rawValue))
        let pdu = try CoAPError.check(
            coap_new_pdu(request.confirmable ? COAP_MESSAGE_CON : COAP_MESSAGE_NON, code, session),
            .libraryFailure, operation, "coap_new_pdu failed; the process may be out of memory")
        var token = [UInt8](repeating: 0, count: 8)
        var length = 0
        coap_session_new_token(session, &length, &token)
        token = Array(token.prefix(length))
        // Options in ascending number order.
        var added = coap_add_token(pdu, token.count, token) != 0
        if observe {
            added = added && PDU.add(pdu, COAP_OPTION_OBSERVE, uint: UInt64(COAP_OBSERVE_ESTABLISH))
        }
        added = added && PDU.add(pdu, COAP_OPTION_URI_PATH, path: request.path)
        if let format = request.contentFormat, !request.payload.isEmpty {
            added = added && PDU.add(pdu, COAP_OPTION_CONTENT_FORMAT, uint: UInt64(format.rawValue))
        }
        for item in request.query {
            added = added && PDU.add(pdu, COAP_OPTION_URI_QUERY, Array(item.utf8))
        }
        if let accept = request.accept {
            added = added && PDU.add(pdu, COAP_OPTION_ACCEPT, uint: UInt64(accept.rawValue))
        }
        if let szx = request.blockSize.flatMap(BlockSize.szx) {
            // Block 0 with the wanted size: libcoap asks for the next blocks in the same size;
            // with blocks transferred by the caller, the block the caller wants.
            added = added && PDU.add(pdu, COAP_OPTION_BLOCK2, uint: UInt64(request.blockNumber) << 4 | UInt64(szx))
            if !request.payload.isEmpty {
                added = added && PDU.add(pdu, COAP_OPTION_BLOCK1, uint: UInt64(szx))
            }
        }
        guard added else {
            coap_delete_pdu(pdu)
            throw CoAPError(
                code: .invalidArgument, operation: operation,
                message: "the options do not fit in one datagram; shorten the path and query")
        }
        if !request.payload.isEmpty {
            let payload = CoAPPayload(request.payload)
            let lease = PayloadLease.retained(payload, references: references)
            guard
                coap_add_data_large_request(
                    session, pdu, payload.count, payload.storage.buffer.baseAddress, releasePayloadLease, lease) != 0
            else {
                coap_delete_pdu(pdu)
                throw CoAPError(
                    code: .libraryFailure, operation: operation,
                    message: "libcoap could not add the payload; see the log for the reason")
            }
        }
        return (pdu, token)
    }

    /// The caller stopped waiting (task cancelled, iteration stopped). An
    /// exchange not started yet is skipped by `start` (`Waiter.isAbandoned`).
    func abandon(_ id: UInt64) {
        guard let exchange = exchanges[id] else { return }
        if case .observation = exchange.waiter, exchange.deadline == nil,
            let state = sessions[exchange.session], state.handle == exchange.key.session, !state.failed
        {
            var token = exchange.key.token
            token.withUnsafeMutableBufferPointer { buffer in
                var binary = coap_binary_t(length: buffer.count, s: buffer.baseAddress)
                _ = coap_cancel_observe(exchange.key.session, &binary, COAP_MESSAGE_CON)
            }
            let expiry = ContinuousClock.now + .seconds(30)
            cancelledObservations[exchange.key] = expiry
            if cancelledPruneAt == nil { cancelledPruneAt = expiry }
        }
        finish(id, .failure(CancellationError()))
    }

    /// Removes exchange `id` and completes its waiter.
    private func finish(_ id: UInt64, _ result: Result<CoAPClientResponse?, any Error>) {
        guard let exchange = exchanges.removeValue(forKey: id) else { return }
        exchangeIDs[exchange.key] = nil
        Self.finish(exchange.waiter, result)
    }

    private static func finish(_ waiter: Waiter, _ result: Result<CoAPClientResponse?, any Error>) {
        switch (waiter, result) {
        case (.single(let completion), .success(let response?)):
            completion.succeed(response)
        case (.single(let completion), .failure(let error)):
            completion.fail(error)
        case (.single(let completion), .success(nil)):
            completion.fail(CancellationError())
        case (.observation(let sink), .success(let response)):
            if let response {
                sink.continuation.yield(response)
            }
            sink.continuation.finish()
        case (.observation(let sink), .failure(let error)):
            if error is CancellationError {
                sink.continuation.finish()
            } else {
                sink.continuation.finish(throwing: error)
            }
        }
    }

    // MARK: - Loop member

    func process(now: ContinuousClock.Instant, ioTimeout: UInt32) -> ContinuousClock.Instant? {
        guard let context else { return nil }
        if coap_io_process(context, ioTimeout) < 0 {
            logger.error("coap_io_process failed")
        }
        if let pruneAt = cancelledPruneAt, pruneAt <= now {
            cancelledObservations = cancelledObservations.filter { $0.value > now }
            cancelledPruneAt = cancelledObservations.values.min()
        }
        var next: ContinuousClock.Instant?
        var expired: [UInt64] = []
        for (id, exchange) in exchanges {
            guard let deadline = exchange.deadline else { continue }
            if deadline <= now {
                expired.append(id)
            } else if next == nil || deadline < next! {
                next = deadline
            }
        }
        for id in expired {
            guard let exchange = exchanges[id] else { continue }
            let session = exchange.key.session
            if coap_session_get_proto(session) == COAP_PROTO_DTLS
                && coap_session_get_state(session) != COAP_SESSION_STATE_ESTABLISHED
            {
                // A server drops a Finished message made with the wrong key without a word.
                finish(
                    id,
                    .failure(
                        CoAPError(
                            code: .sessionFailed, operation: exchange.operation,
                            message: "the DTLS handshake did not complete in time; check the PSK identity and key")))
            } else {
                finish(
                    id,
                    .failure(
                        CoAPError(
                            code: .timeout, operation: exchange.operation,
                            message:
                                "no response in time; check that the server is reachable, or allow a longer timeout")))
            }
        }
        return next
    }

    // MARK: - libcoap callbacks (loop thread)

    fileprivate func didReceive(_ session: OpaquePointer, _ pdu: OpaquePointer) -> coap_response_t {
        let key = TokenKey(session: session, token: PDU.token(pdu))
        guard let id = exchangeIDs[key], var exchange = exchanges[id] else {
            if cancelledObservations[key] != nil {
                // The answer to our deregistration (no Observe option) ends it.
                if PDU.option(pdu, COAP_OPTION_OBSERVE) == nil { cancelledObservations[key] = nil }
                return COAP_RESPONSE_OK
            }
            // Unknown token (late answer, stale observation): a reset stops the peer.
            return COAP_RESPONSE_FAIL
        }
        let response = Self.response(pdu)
        switch exchange.waiter {
        case .single:
            finish(id, .success(response))
        case .observation(let sink):
            let established = exchange.deadline == nil
            if !response.code.isSuccess || (!established && response.observe == nil) {
                // Refused or not observable: the server will send nothing more.
                finish(id, .success(response))
            } else {
                exchange.deadline = nil
                exchanges[id] = exchange
                sink.continuation.yield(response)
            }
        }
        return COAP_RESPONSE_OK
    }

    fileprivate func didFail(_ session: OpaquePointer, sent: OpaquePointer?, reason: coap_nack_reason_t) {
        let error = Self.error(for: reason, endpoint: sessionIDs[session].flatMap { sessions[$0] }?.endpoint)
        if let sent, let id = exchangeIDs[TokenKey(session: session, token: PDU.token(sent))] {
            finish(id, .failure(error))
        }
        if reason == COAP_NACK_TLS_FAILED {
            sessionFailed(session, error)
        }
    }

    fileprivate func didEvent(_ session: OpaquePointer, _ event: coap_event_t) {
        switch event {
        case COAP_EVENT_DTLS_ERROR, COAP_EVENT_DTLS_CLOSED:
            let endpoint = sessionIDs[session].flatMap { sessions[$0] }?.endpoint
            sessionFailed(session, Self.error(for: COAP_NACK_TLS_FAILED, endpoint: endpoint))
        default:
            break
        }
    }

    /// Fails what waits on `session`; the next request makes a new session.
    private func sessionFailed(_ session: OpaquePointer, _ error: CoAPError) {
        guard let id = sessionIDs[session], let state = sessions[id], state.handle == session else { return }
        if !state.failed {
            logger.warning(
                "CoAP session failed",
                metadata: ["coap.peer": "\(state.endpoint.host):\(state.endpoint.port)", "error": "\(error.message)"])
        }
        state.failed = true
        for (exchangeID, exchange) in exchanges where exchange.key.session == session {
            finish(exchangeID, .failure(error))
        }
    }

    private static func error(for reason: coap_nack_reason_t, endpoint: ResolvedEndpoint?) -> CoAPError {
        let peer = endpoint.map { "\($0.host):\($0.port)" } ?? "the server"
        switch reason {
        case COAP_NACK_TLS_FAILED:
            return CoAPError(
                code: .sessionFailed, operation: "DTLS",
                message: "the DTLS session with \(peer) failed or was closed; check the PSK identity and key")
        case COAP_NACK_TOO_MANY_RETRIES:
            return CoAPError(
                code: .timeout, operation: "request",
                message: "\(peer) did not acknowledge after all retransmissions; check that it is reachable")
        case COAP_NACK_RST:
            return CoAPError(
                code: .sendFailed, operation: "request",
                message: "\(peer) answered with a reset; it rejected the message")
        case COAP_NACK_ICMP_ISSUE:
            return CoAPError(
                code: .sendFailed, operation: "request",
                message: "\(peer) is unreachable (ICMP); check the address and that a server listens there")
        default:
            return CoAPError(
                code: .sendFailed, operation: "request", message: "the request to \(peer) could not be delivered")
        }
    }

    private static func response(_ pdu: OpaquePointer) -> CoAPClientResponse {
        let location = PDU.options(pdu, COAP_OPTION_LOCATION_PATH).map { String(decoding: $0, as: UTF8.self) }
        return CoAPClientResponse(
            code: CoAPResponseCode(rawValue: PDU.code(pdu)),
            payload: PDU.payload(pdu),
            contentFormat: PDU.contentFormat(pdu, COAP_OPTION_CONTENT_FORMAT),
            etag: PDU.option(pdu, COAP_OPTION_ETAG),
            size2: PDU.uintOption(pdu, COAP_OPTION_SIZE2).map { Int(truncatingIfNeeded: $0) },
            maxAge: PDU.uintOption(pdu, COAP_OPTION_MAXAGE).map { UInt32(truncatingIfNeeded: $0) },
            observe: PDU.uintOption(pdu, COAP_OPTION_OBSERVE).map { UInt32(truncatingIfNeeded: $0) },
            locationPath: location.isEmpty ? nil : location.joined(separator: "/"),
            block2: PDU.uintOption(pdu, COAP_OPTION_BLOCK2).flatMap(CoAPBlock.init(optionValue:)))
    }

    fileprivate static func from(_ session: OpaquePointer?) -> ClientCore? {
        guard let session, let context = coap_session_get_context(session), let pointer = coap_get_app_data(context)
        else { return nil }
        return Unmanaged<ClientCore>.fromOpaque(pointer).takeUnretainedValue()
    }
}

/// The consumer side of an observation: the stream's continuation, and
/// whether the consumer stopped iterating.
final class ObservationSink: Sendable {
    let continuation: AsyncThrowingStream<CoAPClientResponse, any Error>.Continuation
    private let terminated = Atomic<Bool>(false)

    init(_ continuation: AsyncThrowingStream<CoAPClientResponse, any Error>.Continuation) {
        self.continuation = continuation
    }

    var isTerminated: Bool { terminated.load(ordering: .acquiring) }

    func markTerminated() {
        terminated.store(true, ordering: .releasing)
    }
}

// MARK: - C callbacks

private func clientResponseHandler(
    _ session: OpaquePointer?, _ sent: OpaquePointer?, _ received: OpaquePointer?, _ mid: coap_mid_t
) -> coap_response_t {
    guard let session, let received, let core = ClientCore.from(session) else { return COAP_RESPONSE_OK }
    return core.didReceive(session, received)
}

private func clientNackHandler(
    _ session: OpaquePointer?, _ sent: OpaquePointer?, _ reason: coap_nack_reason_t, _ mid: coap_mid_t
) {
    guard let session, let core = ClientCore.from(session) else { return }
    core.didFail(session, sent: sent, reason: reason)
}

private func clientEventHandler(_ session: OpaquePointer?, _ event: coap_event_t) -> Int32 {
    guard let session, let core = ClientCore.from(session) else { return 0 }
    core.didEvent(session, event)
    return 0
}
