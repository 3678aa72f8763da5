import CCoAP
import CLoopSupport
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The part of a ``CoAPServer`` that lives on its event loop's thread: the
/// libcoap context, its resources and the deferred requests in flight.
///
/// `@unchecked Sendable`: after `init` every method runs on `loop`'s thread,
/// from a command or a libcoap callback; deferred handlers only post commands.
final class ServerCore: LoopMember, @unchecked Sendable {
    /// A request answered by a ``CoAPHandler/deferred(_:)`` handler: libcoap
    /// keeps the request (`coap_register_async`) and calls the handler again
    /// once triggered; that second call sends `response` as a separate response.
    struct Deferred {
        let async: OpaquePointer
        /// The message ID of the original request; libcoap's copy has a new one,
        /// which tells the triggered call from a retransmission of the request.
        let requestMID: coap_mid_t
        let deadline: ContinuousClock.Instant
        var task: Task<Void, Never>?
        var response: CoAPResponse?
        let description: String
    }

    let configuration: CoAPServer.Configuration
    let logger: Logger
    let references: LibcoapReferences
    let loop: CoAPEventLoop

    var context: OpaquePointer?
    var contextReference: Unmanaged<ServerCore>?
    private(set) var pollFD: Int32 = -1
    var paths: Set<String> = []
    var handles: [String: OpaquePointer] = [:]
    var deferred: [UInt64: Deferred] = [:]
    var deferredByAsync: [OpaquePointer: UInt64] = [:]
    var nextDeferredID: UInt64 = 0
    var pskHint: UnsafeMutableBufferPointer<UInt8>?
    /// Where the PSK lookup puts the key it returns; libcoap copies it at once.
    let pskKey = UnsafeMutablePointer<coap_bin_const_t>.allocate(capacity: 1)
    let pskKeyBytes = UnsafeMutablePointer<UInt8>.allocate(capacity: maxPSKLength)

    /// Peers libcoap made a DTLS hello session for during the current `coap_io_process`.
    /// Kept by address: a session whose handshake fails at once is freed without an event.
    var newHellos: [(address: coap_address_t, ifindex: Int32)] = []
    /// DTLS sessions past the cookie exchange and still mid-handshake, since when.
    var handshaking: [OpaquePointer: ContinuousClock.Instant] = [:]
    var nextHandshakeCheck = ContinuousClock.now
    /// Off when this libcoap's session layout is not 4.3.1's (see the shim).
    var retiresHellos = true

    /// Verified certificate CNs of DTLS sessions, until the session closes.
    var certificateNames: [OpaquePointer: String] = [:]
    /// The PKI file names as C strings: libcoap may keep pointing at them.
    var pkiStrings: [UnsafeMutablePointer<CChar>] = []

    /// Receive buffer asked for on the endpoint sockets (the kernel caps it at net.core.rmem_max).
    static let receiveBufferBytes: Int32 = 4 << 20

    /// COAP_DTLS_MAX_PSK in 4.3.1.
    static let maxPSKLength = 64

    init(configuration: CoAPServer.Configuration, logger: Logger, references: LibcoapReferences, loop: CoAPEventLoop) {
        self.configuration = configuration
        self.logger = logger
        self.references = references
        self.loop = loop
        pskKey.initialize(to: coap_bin_const_t(length: 0, s: nil))
    }

    deinit {
        pskKey.deallocate()
        pskKeyBytes.deallocate()
        pskHint?.deallocate()
        for string in pkiStrings { free(string) }
    }

    // MARK: - Lifecycle (loop thread)

    func open(endpoints: [ResolvedEndpoint], resources: [CoAPResource]) throws(CoAPError) {
        loop.core.preconditionInLoop()
        let context = try CoAPError.check(
            coap_new_context(nil), .libraryFailure, "start",
            "coap_new_context failed; the process may be out of memory")
        self.context = context
        let reference = references.retain(self)
        contextReference = reference
        coap_set_app_data(context, reference.toOpaque())
        coap_context_set_block_mode(context, UInt8(COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY))
        coap_context_set_max_handshake_sessions(context, UInt32(clamping: configuration.maxHandshakes))
        coap_resource_release_userdata_handler(context) { ResourceEntry.release($0) }
        do throws(CoAPError) {
            if let psk = configuration.psk {
                try configurePSK(context, psk, reference: reference)
            }
            if let pki = configuration.pki {
                try configurePKI(context, pki, reference: reference)
            }
            coap_register_event_handler(context, serverEventHandler)
            for endpoint in endpoints {
                try listen(context, endpoint)
            }
            for resource in resources {
                try register(resource)
            }
            pollFD = coap_context_get_coap_fd(context)
            guard pollFD >= 0 else {
                throw CoAPError(
                    code: .libraryFailure, operation: "start",
                    message:
                        "libcoap is built without epoll support, which the event loop needs; install Debian's libcoap3")
            }
            // libcoap opens its sockets without close-on-exec; see CLoopSupport.
            if loop_support_epoll_set_cloexec(pollFD) < 0 {
                logger.warning("cannot set close-on-exec on libcoap's sockets: /proc/self/fdinfo is unreadable")
            }
            // A burst of requests (a release wakes every observer) must not overflow the socket.
            if loop_support_epoll_set_udp_rcvbuf(pollFD, Self.receiveBufferBytes) < 1 {
                logger.notice("cannot enlarge the UDP receive buffer of the CoAP endpoints; bursts may be dropped")
            }
        } catch {
            close()
            throw error
        }
        loop.core.add(self)
        logger.info(
            "CoAP server listening",
            metadata: ["coap.endpoints": .array(endpoints.map { .string($0.description) })])
    }

    func configurePSK(
        _ context: OpaquePointer, _ psk: CoAPServer.PSK, reference: Unmanaged<ServerCore>
    ) throws(CoAPError) {
        try CoAPError.checkDTLSSupported("start", instead: "drop the PSK configuration")
        var setup = coap_dtls_spsk_t()
        setup.version = UInt8(COAP_DTLS_SPSK_SETUP_VERSION)
        setup.validate_id_call_back = serverPSKLookup
        setup.id_call_back_arg = reference.toOpaque()
        if let hint = psk.hint, !hint.isEmpty {
            // libcoap keeps pointing at the hint: it lives as long as this core.
            let bytes = Array(hint.utf8)
            let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: bytes.count)
            _ = buffer.initialize(from: bytes)
            pskHint = buffer
            setup.psk_info.hint = coap_bin_const_t(length: buffer.count, s: buffer.baseAddress)
        }
        try CoAPError.check(
            coap_context_set_psk2(context, &setup), .dtlsUnavailable, "start",
            "libcoap rejected the PSK setup (coap_context_set_psk2); see the log for the reason")
    }

    func configurePKI(
        _ context: OpaquePointer, _ pki: CoAPServer.PKI, reference: Unmanaged<ServerCore>
    ) throws(CoAPError) {
        try CoAPError.checkDTLSSupported("start", instead: "drop the certificate configuration")
        for (what, path) in [("CA", pki.caFile), ("certificate", pki.certificateFile), ("private key", pki.privateKeyFile)]
        where access(path, R_OK) != 0 {
            throw CoAPError(
                code: .invalidArgument, operation: "start",
                message: "the DTLS \(what) file '\(path)' is missing or unreadable; check the path (Certs/make-dev-certs.sh makes development ones)")
        }
        let paths: [String] = [pki.caFile, pki.certificateFile, pki.privateKeyFile]
        let strings = paths.map { path in path.withCString { strdup($0)! } }
        pkiStrings += strings
        try CoAPError.check(
            ccoap_context_set_pki_pem(context, strings[0], strings[1], strings[2], serverCertificateName, reference.toOpaque()),
            .dtlsUnavailable, "start",
            "libcoap rejected the certificate setup (coap_context_set_pki); check that the certificate and key match and are PEM")
    }

    func listen(_ context: OpaquePointer, _ endpoint: ResolvedEndpoint) throws(CoAPError) {
        var address = endpoint.address
        let scheme = endpoint.secure ? "coaps" : "coap"
        let advice =
            "cannot listen on UDP \(endpoint.host):\(endpoint.port) for \(scheme): "
            + "the port is in use or the address is not local; choose another port or address"
        let probe = ccoap_udp_bind_probe(&address)
        guard probe == 0 else {
            throw CoAPError(code: .bindFailed, operation: "start", advice: advice, errno: probe)
        }
        errno = 0
        _ = try CoAPError.check(
            coap_new_endpoint(context, &address, endpoint.secure ? COAP_PROTO_DTLS : COAP_PROTO_UDP),
            .bindFailed, "start", advice)
    }

    /// Adds a resource to the context. Loop thread.
    func register(_ resource: CoAPResource) throws(CoAPError) {
        loop.core.preconditionInLoop()
        guard let context else { throw .notRunning("addResource", "the server is stopped") }
        guard !paths.contains(resource.path) else {
            throw CoAPError(
                code: .resourceConflict, operation: "addResource",
                message: "a resource with path \"\(resource.path)\" is already registered; use one resource per path")
        }
        let bytes = Array(resource.path.utf8)
        let uri = try CoAPError.check(
            bytes.withUnsafeBufferPointer { coap_new_str_const($0.baseAddress, $0.count) },
            .libraryFailure, "addResource", "coap_new_str_const failed; the process may be out of memory")
        let notify = resource.confirmableNotifications ? COAP_RESOURCE_FLAGS_NOTIFY_CON : COAP_RESOURCE_FLAGS_NOTIFY_NON
        // COAP_RESOURCE_FLAGS_RELEASE_URI: the resource owns `uri` from here on.
        guard let handle = coap_resource_init(uri, Int32(COAP_RESOURCE_FLAGS_RELEASE_URI | notify)) else {
            coap_delete_str_const(uri)
            throw CoAPError(
                code: .libraryFailure, operation: "addResource",
                message: "coap_resource_init failed for \"\(resource.path)\"; the process may be out of memory")
        }
        coap_resource_set_userdata(handle, ResourceEntry.retained(resource, references: references))
        for method in resource.handlers.keys {
            let code = coap_request_t(rawValue: UInt32(method.rawValue))
            coap_register_request_handler(handle, code, serverRequestHandler)
        }
        if resource.isObservable {
            coap_resource_set_get_observable(handle, 1)
        }
        coap_add_resource(context, handle)
        paths.insert(resource.path)
        handles[resource.path] = handle
    }

    /// Frees the context: libcoap releases the resource entries and the
    /// payloads of unfinished transfers through their callbacks. Loop thread,
    /// never from inside a libcoap callback.
    func close() {
        loop.core.preconditionInLoop()
        loop.core.remove(self)
        for request in deferred.values {
            request.task?.cancel()
        }
        deferred.removeAll()
        deferredByAsync.removeAll()
        newHellos.removeAll()
        handshaking.removeAll()
        handles.removeAll()
        paths.removeAll()
        pollFD = -1
        references.freeContext(&context, owner: &contextReference)
    }

    func loopDidShutDown() {
        close()
    }

    // MARK: - Loop member

    func process(now: ContinuousClock.Instant, ioTimeout: UInt32) -> ContinuousClock.Instant? {
        loop.core.preconditionInLoop()
        guard let context else { return nil }
        if coap_io_process(context, ioTimeout) < 0 {
            logger.error("coap_io_process failed")
        }
        if !newHellos.isEmpty || !handshaking.isEmpty {
            guardHandshakes(context, now: .now)
        }
        var next: ContinuousClock.Instant?
        var expired: [UInt64] = []
        for (id, request) in deferred where request.response == nil {
            if request.deadline <= now {
                expired.append(id)
            } else if next == nil || request.deadline < next! {
                next = request.deadline
            }
        }
        for id in expired {
            guard let request = deferred[id] else { continue }
            logger.warning(
                "CoAP handler timed out, answering 5.03",
                metadata: ["coap.request": "\(request.description)", "coap.timeout": "\(configuration.handlerTimeout)"])
            request.task?.cancel()
            complete(id, .status(.serviceUnavailable, diagnostic: "the handler timed out; retry later"))
        }
        return next
    }

    /// Observers of `path` get the GET handler's new answer. Loop thread.
    func notifyObservers(path: String) {
        loop.core.preconditionInLoop()
        guard let handle = handles[CoAPResource.normalize(path)] else {
            logger.debug("notifyObservers: no such resource", metadata: ["coap.path": "\(path)"])
            return
        }
        // libcoap 4.3.1 ignores the query argument: every observer of the resource is notified.
        coap_resource_notify_observers(handle, nil)
    }
}
