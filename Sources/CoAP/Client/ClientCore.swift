import CCoAP
import CLoopSupport
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
    struct TokenKey: Hashable {
        let session: OpaquePointer
        let token: [UInt8]
    }

    struct Exchange {
        let session: UInt64
        let key: TokenKey
        let waiter: Waiter
        /// Until the (first) response; `nil` once an observation is established.
        var deadline: ContinuousClock.Instant?
        let operation: String
    }

    /// One peer and its credentials; the libcoap session is replaced after a DTLS failure.
    final class SessionState {
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
    let ids = Atomic<UInt64>(0)

    var context: OpaquePointer?
    var contextReference: Unmanaged<ClientCore>?
    private(set) var pollFD: Int32 = -1
    var closed = false
    var sessions: [UInt64: SessionState] = [:]
    var sessionIDs: [OpaquePointer: UInt64] = [:]
    let blockTransfers: CoAPClient.BlockTransfers
    var exchanges: [UInt64: Exchange] = [:]
    var exchangeIDs: [TokenKey: UInt64] = [:]
    /// Observations cancelled here, until the server's answer to the deregistering GET
    /// (or a notification already on its way) is in: acknowledged, not reset.
    var cancelledObservations: [TokenKey: ContinuousClock.Instant] = [:]
    /// When the oldest entry of `cancelledObservations` expires: `process` (every loop
    /// iteration) only prunes then.
    var cancelledPruneAt: ContinuousClock.Instant?

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

    func ensureContext(_ operation: String) throws(CoAPError) -> OpaquePointer {
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
        loop.core.preconditionInLoop()
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
        references.freeContext(&context, owner: &contextReference)
    }

    func loopDidShutDown() {
        close()
    }

    // MARK: - Sessions

    func openSession(
        _ id: UInt64, endpoint: ResolvedEndpoint, security: CoAPClient.Security, _ completion: Completion<Void>
    ) {
        loop.core.preconditionInLoop()
        do throws(CoAPError) {
            let state = SessionState(id: id, endpoint: endpoint, security: security)
            try connect(state, "session")
            sessions[id] = state
            completion.succeed(())
        } catch {
            completion.fail(error)
        }
    }

    func connect(_ state: SessionState, _ operation: String) throws(CoAPError) {
        let context = try ensureContext(operation)
        var address = state.endpoint.address
        let handle: OpaquePointer?
        switch state.security {
        case .none:
            handle = coap_new_client_session(context, nil, &address, COAP_PROTO_UDP)
        case .psk:
            try CoAPError.checkDTLSSupported(operation, instead: "use Security.none")
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
        // The session's socket, like every libcoap descriptor, lacks close-on-exec; see CLoopSupport.
        _ = loop_support_epoll_set_cloexec(pollFD)
        state.handle = session
        state.failed = false
        sessionIDs[session] = state.id
    }

    /// Releases the libcoap session (libcoap cancels its observations). Outside callbacks.
    func release(_ state: SessionState) {
        guard let handle = state.handle else { return }
        state.handle = nil
        sessionIDs[handle] = nil
        coap_session_release(handle)
    }

    func closeSession(_ id: UInt64) {
        loop.core.preconditionInLoop()
        guard let state = sessions.removeValue(forKey: id) else { return }
        let error = CoAPError.notRunning("request", "the session to \(state.endpoint.description) is closed")
        for (exchangeID, exchange) in exchanges where exchange.session == id {
            finish(exchangeID, .failure(error))
        }
        release(state)
    }
}

/// The consumer side of an observation: the stream's continuation, and
/// whether the consumer stopped iterating.
final class ObservationSink: Sendable {
    let continuation: AsyncThrowingStream<CoAPClientResponse, any Error>.Continuation
    let terminated = Atomic<Bool>(false)

    init(_ continuation: AsyncThrowingStream<CoAPClientResponse, any Error>.Continuation) {
        self.continuation = continuation
    }

    var isTerminated: Bool { terminated.load(ordering: .acquiring) }

    func markTerminated() {
        terminated.store(true, ordering: .releasing)
    }
}
