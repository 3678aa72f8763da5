import CCoAP
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A registered resource: retained by libcoap as the resource's user data
/// and released through `coap_resource_release_userdata_handler` when the
/// context frees it.
final class ResourceEntry: Sendable {
    let resource: CoAPResource
    let references: LibcoapReferences

    init(_ resource: CoAPResource, references: LibcoapReferences) {
        self.resource = resource
        self.references = references
    }
}

/// The part of a ``CoAPServer`` that lives on its event loop's thread: the
/// libcoap context, its resources and the deferred requests in flight.
///
/// `@unchecked Sendable`: after `init` every method runs on `loop`'s thread,
/// from a command or a libcoap callback; deferred handlers only post commands.
final class ServerCore: LoopMember, @unchecked Sendable {
    /// A request answered by a ``CoAPHandler/deferred(_:)`` handler: libcoap
    /// keeps the request (`coap_register_async`) and calls the handler again
    /// once triggered; that second call sends `response` as a separate response.
    private struct Deferred {
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

    private var context: OpaquePointer?
    private var contextReference: Unmanaged<ServerCore>?
    private(set) var pollFD: Int32 = -1
    private var paths: Set<String> = []
    private var handles: [String: OpaquePointer] = [:]
    private var deferred: [UInt64: Deferred] = [:]
    private var deferredByAsync: [OpaquePointer: UInt64] = [:]
    private var nextDeferredID: UInt64 = 0
    private var pskHint: UnsafeMutableBufferPointer<UInt8>?
    /// Where the PSK lookup puts the key it returns; libcoap copies it at once.
    private let pskKey = UnsafeMutablePointer<coap_bin_const_t>.allocate(capacity: 1)
    private let pskKeyBytes = UnsafeMutablePointer<UInt8>.allocate(capacity: maxPSKLength)

    /// Peers libcoap made a DTLS hello session for during the current `coap_io_process`.
    /// Kept by address: a session whose handshake fails at once is freed without an event.
    private var newHellos: [(address: coap_address_t, ifindex: Int32)] = []
    /// DTLS sessions past the cookie exchange and still mid-handshake, since when.
    private var handshaking: [OpaquePointer: ContinuousClock.Instant] = [:]
    private var nextHandshakeCheck = ContinuousClock.now
    /// Off when this libcoap's session layout is not 4.3.1's (see the shim).
    private var retiresHellos = true

    /// Verified certificate CNs of DTLS sessions, until the session closes.
    private var certificateNames: [OpaquePointer: String] = [:]
    /// The PKI file names as C strings: libcoap may keep pointing at them.
    private var pkiStrings: [UnsafeMutablePointer<CChar>] = []

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
        let context = try CoAPError.check(
            coap_new_context(nil), .libraryFailure, "start",
            "coap_new_context failed; the process may be out of memory")
        self.context = context
        let reference = references.retain(self)
        contextReference = reference
        coap_set_app_data(context, reference.toOpaque())
        coap_context_set_block_mode(context, UInt8(COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY))
        coap_context_set_max_handshake_sessions(context, UInt32(clamping: configuration.maxHandshakes))
        coap_resource_release_userdata_handler(context, releaseResourceEntry)
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
            // libcoap opens its sockets without close-on-exec; see the shim.
            if ccoap_set_cloexec(pollFD) < 0 {
                logger.warning("cannot set close-on-exec on libcoap's sockets: /proc/self/fdinfo is unreadable")
            }
            // A burst of requests (a release wakes every observer) must not overflow the socket.
            if ccoap_set_udp_rcvbuf(pollFD, Self.receiveBufferBytes) < 1 {
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

    private func configurePSK(
        _ context: OpaquePointer, _ psk: CoAPServer.PSK, reference: Unmanaged<ServerCore>
    ) throws(CoAPError) {
        guard coap_dtls_is_supported() != 0 else {
            throw CoAPError(
                code: .dtlsUnavailable, operation: "start",
                message: "this libcoap has no DTLS support; link libcoap-3-openssl or drop the PSK configuration")
        }
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

    private func configurePKI(
        _ context: OpaquePointer, _ pki: CoAPServer.PKI, reference: Unmanaged<ServerCore>
    ) throws(CoAPError) {
        guard coap_dtls_is_supported() != 0 else {
            throw CoAPError(
                code: .dtlsUnavailable, operation: "start",
                message: "this libcoap has no DTLS support; link libcoap-3-openssl or drop the certificate configuration")
        }
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

    private func listen(_ context: OpaquePointer, _ endpoint: ResolvedEndpoint) throws(CoAPError) {
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
        let entry = references.retain(ResourceEntry(resource, references: references))
        coap_resource_set_userdata(handle, entry.toOpaque())
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

    // MARK: - Loop member

    func process(now: ContinuousClock.Instant, ioTimeout: UInt32) -> ContinuousClock.Instant? {
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
        guard let handle = handles[CoAPResource.normalize(path)] else {
            logger.debug("notifyObservers: no such resource", metadata: ["coap.path": "\(path)"])
            return
        }
        // libcoap 4.3.1 ignores the query argument: every observer of the resource is notified.
        coap_resource_notify_observers(handle, nil)
    }

    // MARK: - Requests (libcoap callback, loop thread)

    fileprivate func handle(
        _ entry: ResourceEntry, resource: OpaquePointer, session: OpaquePointer, request: OpaquePointer,
        query: UnsafePointer<coap_string_t>?, response: OpaquePointer
    ) {
        guard let method = CoAPMethod(rawValue: PDU.code(request)), let handler = entry.resource.handlers[method] else {
            PDU.setCode(response, .methodNotAllowed)
            return
        }
        switch handler {
        case .immediate(let body):
            let options = PDU.requestOptions(request)
            let answer = body(makeRequest(method, entry, session: session, pdu: request, options: options))
            write(
                answer, resource: resource, session: session, request: request, query: query, into: response,
                block2: options.block2)
        case .deferred(let body):
            handleDeferred(
                body, method, entry, resource: resource, session: session, request: request, query: query,
                response: response)
        }
    }

    private func handleDeferred(
        _ body: @escaping @Sendable (CoAPRequest) async throws -> CoAPResponse, _ method: CoAPMethod,
        _ entry: ResourceEntry, resource: OpaquePointer, session: OpaquePointer, request: OpaquePointer,
        query: UnsafePointer<coap_string_t>?, response: OpaquePointer
    ) {
        if let async = coap_find_async(session, coap_pdu_get_token(request)) {
            guard let id = deferredByAsync[async], let pending = deferred[id], let answer = pending.response,
                coap_pdu_get_mid(request) != pending.requestMID
            else {
                // A retransmission while the handler runs: no code means libcoap sends an empty ACK again.
                return
            }
            // Triggered by `complete`: libcoap frees `async` when this call returns.
            deferred[id] = nil
            deferredByAsync[async] = nil
            write(
                answer, resource: resource, session: session, request: request, query: query, into: response,
                block2: PDU.requestOptions(request).block2)
            return
        }
        guard deferred.count < configuration.maxDeferredRequests else {
            logger.warning("too many deferred CoAP requests in flight, answering 5.03")
            write(.status(.serviceUnavailable, diagnostic: "busy; retry later"), resource: resource, session: session,
                request: request, query: query, into: response, block2: nil)
            return
        }
        // Delay 0: libcoap keeps the request until `coap_async_trigger`; no code here sends an empty ACK.
        guard let async = coap_register_async(session, request, 0) else {
            write(.status(.serviceUnavailable), resource: resource, session: session, request: request, query: query,
                into: response, block2: nil)
            return
        }
        let value = makeRequest(method, entry, session: session, pdu: request, options: PDU.requestOptions(request))
        nextDeferredID &+= 1
        let id = nextDeferredID
        deferred[id] = Deferred(
            async: async, requestMID: coap_pdu_get_mid(request),
            deadline: .now + configuration.handlerTimeout, task: nil, response: nil,
            description: "\(method) \(entry.resource.path)")
        deferredByAsync[async] = id
        let logger = self.logger
        let loop = self.loop
        deferred[id]?.task = Task {
            let answer: CoAPResponse
            do {
                answer = try await body(value)
            } catch {
                logger.error(
                    "CoAP handler failed, answering 5.00",
                    metadata: ["coap.method": "\(method)", "coap.path": "\(value.path)", "error": "\(error)"])
                answer = .status(.internalServerError)
            }
            loop.execute { [self] in complete(id, answer) }
        }
    }

    /// The handler of deferred request `id` answered: libcoap calls the
    /// request handler again on the next `coap_io_process`, which sends it.
    private func complete(_ id: UInt64, _ answer: CoAPResponse) {
        guard context != nil, var request = deferred[id], request.response == nil else { return }
        request.response = answer
        request.task = nil
        deferred[id] = request
        coap_async_trigger(request.async)
    }

    private func makeRequest(
        _ method: CoAPMethod, _ entry: ResourceEntry, session: OpaquePointer, pdu: OpaquePointer,
        options: PDU.RequestOptions
    ) -> CoAPRequest {
        var identity: String?
        if let bytes = coap_session_get_psk_identity(session)?.pointee, let start = bytes.s {
            identity = String(decoding: UnsafeBufferPointer(start: start, count: bytes.length), as: UTF8.self)
        }
        return CoAPRequest(
            method: method, path: entry.resource.path, query: options.query, payload: PDU.payload(pdu),
            contentFormat: options.contentFormat, accept: options.accept,
            pskIdentity: identity, certificateName: identity == nil ? certificateNames[session] : nil,
            remoteAddress: CoAPAddress(coap_session_get_addr_remote(session)) ?? CoAPAddress(host: "?", port: 0))
    }

    /// Fills libcoap's response PDU.
    ///
    /// A GET answer is cut into the block the request asks for here, on every
    /// request: no copy is left with libcoap (`coap_add_data_large_response`
    /// would answer the later blocks of a session from its own copy, without
    /// asking the handler), so each block is the handler's current decision.
    /// Other methods keep libcoap's large-response path (a POST is not
    /// repeated per block), and so do notifications of block-wise observations.
    /// - Parameter block2: the request's Block2 option (number, SZX), if any.
    private func write(
        _ answer: CoAPResponse, resource: OpaquePointer, session: OpaquePointer, request: OpaquePointer,
        query: UnsafePointer<coap_string_t>?, into response: OpaquePointer, block2: (num: UInt32, szx: UInt32)?
    ) {
        let payload = answer.payload
        guard answer.code.isSuccess, !payload.isEmpty else {
            // An error's diagnostic is short and whole, whatever block was asked for.
            writeWhole(answer, into: response)
            return
        }
        if let block = block2, block.szx > 6 {
            // RFC 7959 2.2: SZX 7 is reserved.
            writeWhole(.status(.badRequest, diagnostic: "Block2 SZX 7 is reserved; use 0-6 (16-1024 bytes)"), into: response)
            return
        }
        if let block = block2, block.num > 0, UInt64(payload.count) <= UInt64(block.num) << (block.szx + 4) {
            writeWhole(.status(.badRequest, diagnostic: "Block2 number past the end of the body"), into: response)
            return
        }
        // A notification of a block-wise observation comes with libcoap's Block2 option
        // already in (it has no call to replace one): libcoap cuts those.
        if PDU.code(request) == CoAPMethod.get.rawValue, PDU.option(response, COAP_OPTION_BLOCK2) == nil {
            writeBlock(answer, session: session, into: response, block2: block2)
            return
        }
        PDU.setCode(response, answer.code)
        let etag = answer.etag ?? payload.contentTag
        if etag != 0 {
            PDU.add(response, COAP_OPTION_ETAG, uint: etag)
        }
        if let location = answer.locationPath {
            PDU.add(response, COAP_OPTION_LOCATION_PATH, path: location)
        }
        if answer.contentFormat == .textPlain {
            // libcoap 4.3.1 leaves out Content-Format 0 (text/plain); without it the format is unknown.
            PDU.add(response, COAP_OPTION_CONTENT_FORMAT, [])
        }
        let added = coap_add_data_large_response(
            resource, session, request, response, query, answer.contentFormat.rawValue,
            answer.maxAge.map { Int32(clamping: $0) } ?? -1, etag, payload.count,
            payload.storage.buffer.baseAddress, releasePayloadLease,
            PayloadLease.retained(payload, references: references))
        if added == 0 {
            logger.warning("coap_add_data_large_response failed", metadata: ["coap.bytes": "\(payload.count)"])
        }
    }

    /// Bytes a response needs besides its block: header, token and options.
    private static let blockHeadroom = 64

    /// One block of a GET answer, with Block2, Size2 and ETag. Without a Block2 option a
    /// body that fits one PDU goes whole; else the block size is the request's, made
    /// smaller when the session's PDU cannot carry it (RFC 7959 2.4).
    private func writeBlock(
        _ answer: CoAPResponse, session: OpaquePointer, into response: OpaquePointer,
        block2: (num: UInt32, szx: UInt32)?
    ) {
        let payload = answer.payload
        let room = coap_session_max_pdu_size(session) - Self.blockHeadroom
        var szx = block2?.szx ?? 6
        while szx > 0 && (16 << szx) > room { szx -= 1 }
        var num = block2.map { $0.num << ($0.szx - szx) } ?? 0
        if block2 == nil && payload.count <= room {
            num = 0
            szx = 7  // whole: no Block2 option
        }
        PDU.setCode(response, answer.code)
        let etag = answer.etag ?? payload.contentTag
        // Options in ascending number: libcoap appends them without sorting work.
        if etag != 0 { PDU.add(response, COAP_OPTION_ETAG, uint: etag) }
        if let location = answer.locationPath { PDU.add(response, COAP_OPTION_LOCATION_PATH, path: location) }
        PDU.add(response, COAP_OPTION_CONTENT_FORMAT, uint: UInt64(answer.contentFormat.rawValue))
        if let maxAge = answer.maxAge { PDU.add(response, COAP_OPTION_MAXAGE, uint: UInt64(maxAge)) }
        let bytes = payload.storage.buffer
        guard szx < 7 else {
            coap_add_data(response, bytes.count, bytes.baseAddress)
            return
        }
        let size = 16 << Int(szx)
        let offset = Int(num) * size
        let end = min(offset + size, bytes.count)
        let more: UInt64 = end < bytes.count ? 8 : 0
        PDU.add(response, COAP_OPTION_BLOCK2, uint: UInt64(num) << 4 | more | UInt64(szx))
        PDU.add(response, COAP_OPTION_SIZE2, uint: UInt64(bytes.count))
        coap_add_data(response, end - offset, bytes.baseAddress! + offset)
    }

    /// A response in one PDU: code, ETag, Location-Path, Content-Format, Max-Age and body.
    private func writeWhole(_ answer: CoAPResponse, into response: OpaquePointer) {
        PDU.setCode(response, answer.code)
        let payload = answer.payload
        let etag = answer.etag ?? (answer.code.isSuccess && !payload.isEmpty ? payload.contentTag : nil)
        if let etag, etag != 0 { PDU.add(response, COAP_OPTION_ETAG, uint: etag) }
        if let location = answer.locationPath { PDU.add(response, COAP_OPTION_LOCATION_PATH, path: location) }
        if !payload.isEmpty { PDU.add(response, COAP_OPTION_CONTENT_FORMAT, uint: UInt64(answer.contentFormat.rawValue)) }
        if let maxAge = answer.maxAge { PDU.add(response, COAP_OPTION_MAXAGE, uint: UInt64(maxAge)) }
        if !payload.isEmpty {
            let bytes = payload.storage.buffer
            coap_add_data(response, bytes.count, bytes.baseAddress)
        }
    }

    // MARK: - DTLS certificates and sessions (libcoap callbacks, loop thread)

    /// A peer's certificate passed the TLS checks; depth 0 is the peer's own.
    fileprivate func certificateChecked(name: String, session: OpaquePointer, depth: UInt32, validated: Bool) -> Bool {
        guard validated else { return false }
        if depth == 0 { certificateNames[session] = name }
        return true
    }

    fileprivate func sessionEnded(_ session: OpaquePointer) {
        certificateNames[session] = nil
        handshaking[session] = nil
    }

    fileprivate func sessionConnected(_ session: OpaquePointer) {
        handshaking[session] = nil
    }

    fileprivate func sessionCreated(_ session: OpaquePointer) {
        guard coap_session_get_proto(session) == COAP_PROTO_DTLS, let address = coap_session_get_addr_remote(session)
        else { return }
        newHellos.append((address.pointee, coap_session_get_ifindex(session)))
    }

    /// Frees the hello sessions made since the last call: their ClientHello is answered
    /// (HelloVerifyRequest), and the cookie it carries is checked without them. Drops
    /// sessions whose handshake outlived ``CoAPServer/Configuration/handshakeTimeout``.
    private func guardHandshakes(_ context: OpaquePointer, now: ContinuousClock.Instant) {
        for var peer in newHellos {
            guard let session = coap_session_get_by_peer(context, &peer.address, peer.ifindex),
                coap_session_get_proto(session) == COAP_PROTO_DTLS
            else { continue }
            switch coap_session_get_type(session) {
            case COAP_SESSION_TYPE_HELLO where retiresHellos:
                if ccoap_session_retire_hello(session) < 0 {
                    retiresHellos = false
                    logger.warning(
                        "this libcoap's sessions are not laid out as 4.3.1's: DTLS hello sessions stay until libcoap frees them (30 s); a ClientHello flood may delay handshakes")
                }
            case COAP_SESSION_TYPE_SERVER where coap_session_get_state(session) == COAP_SESSION_STATE_HANDSHAKE:
                if handshaking[session] == nil { handshaking[session] = now }
            default:
                break
            }
        }
        newHellos.removeAll(keepingCapacity: true)
        guard !handshaking.isEmpty, now >= nextHandshakeCheck else { return }
        nextHandshakeCheck = now + .milliseconds(250)
        let limit = configuration.handshakeTimeout
        for (session, since) in handshaking where now - since > limit {
            handshaking[session] = nil
            guard coap_session_get_state(session) == COAP_SESSION_STATE_HANDSHAKE else { continue }
            logger.debug("DTLS handshake timed out; session dropped", metadata: ["coap.timeout": "\(limit)"])
            // State none: libcoap frees the session on its next pass (SERVER_SESSION_DEL).
            coap_session_disconnected(session, COAP_NACK_TLS_FAILED)
        }
    }

    // MARK: - DTLS PSK (libcoap callback, loop thread)

    /// The key for `identity`, or `nil` to fail the handshake.
    fileprivate func pskKey(for identity: coap_bin_const_t) -> UnsafePointer<coap_bin_const_t>? {
        guard let psk = configuration.psk else { return nil }
        let bytes = UnsafeBufferPointer(start: identity.s, count: identity.s == nil ? 0 : identity.length)
        guard let name = String(validating: bytes, as: UTF8.self), let key = psk.keyForIdentity(name), !key.isEmpty,
            key.count <= Self.maxPSKLength
        else {
            logger.notice(
                "DTLS handshake rejected: unknown PSK identity",
                metadata: ["coap.psk_identity": "\(String(decoding: bytes, as: UTF8.self))"])
            return nil
        }
        pskKeyBytes.update(from: key, count: key.count)
        pskKey.pointee = coap_bin_const_t(length: key.count, s: pskKeyBytes)
        return UnsafePointer(pskKey)
    }
}

// MARK: - C callbacks

/// `coap_method_handler_t` for every method of every resource.
private func serverRequestHandler(
    _ resource: OpaquePointer?, _ session: OpaquePointer?, _ request: OpaquePointer?,
    _ query: UnsafePointer<coap_string_t>?, _ response: OpaquePointer?
) {
    guard let resource, let session, let request, let response,
        let entryPointer = coap_resource_get_userdata(resource),
        let context = coap_session_get_context(session), let corePointer = coap_get_app_data(context)
    else { return }
    let entry = Unmanaged<ResourceEntry>.fromOpaque(entryPointer).takeUnretainedValue()
    let core = Unmanaged<ServerCore>.fromOpaque(corePointer).takeUnretainedValue()
    core.handle(entry, resource: resource, session: session, request: request, query: query, response: response)
}

/// `coap_resource_release_userdata_handler_t`: the context frees a resource.
private func releaseResourceEntry(_ pointer: UnsafeMutableRawPointer?) {
    guard let pointer else { return }
    let entry = Unmanaged<ResourceEntry>.fromOpaque(pointer)
    entry.takeUnretainedValue().references.release(entry)
}

/// `coap_dtls_cn_callback_t`: a peer's certificate (or a CA above it) passed the TLS checks.
private func serverCertificateName(
    _ cn: UnsafePointer<CChar>?, _ certificate: UnsafePointer<UInt8>?, _ length: Int, _ session: OpaquePointer?,
    _ depth: UInt32, _ validated: Int32, _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let cn, let session, let argument else { return 0 }
    let core = Unmanaged<ServerCore>.fromOpaque(argument).takeUnretainedValue()
    return core.certificateChecked(name: String(cString: cn), session: session, depth: depth, validated: validated != 0) ? 1 : 0
}

/// `coap_event_handler_t`: follows DTLS sessions from hello to close.
private func serverEventHandler(_ session: OpaquePointer?, _ event: coap_event_t) -> Int32 {
    guard let session, let context = coap_session_get_context(session), let data = coap_get_app_data(context)
    else { return 0 }
    let core = Unmanaged<ServerCore>.fromOpaque(data).takeUnretainedValue()
    switch event {
    case COAP_EVENT_DTLS_CLOSED, COAP_EVENT_SESSION_CLOSED, COAP_EVENT_SERVER_SESSION_DEL: core.sessionEnded(session)
    case COAP_EVENT_SERVER_SESSION_NEW: core.sessionCreated(session)
    case COAP_EVENT_DTLS_CONNECTED: core.sessionConnected(session)
    default: break
    }
    return 0
}

/// `coap_dtls_id_callback_t`: a client presented a PSK identity.
private func serverPSKLookup(
    _ identity: UnsafeMutablePointer<coap_bin_const_t>?, _ session: OpaquePointer?, _ argument: UnsafeMutableRawPointer?
) -> UnsafePointer<coap_bin_const_t>? {
    guard let identity, let argument else { return nil }
    return Unmanaged<ServerCore>.fromOpaque(argument).takeUnretainedValue().pskKey(for: identity.pointee)
}
