import CCoAP
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Requests, on the loop thread inside `coap_io_process`: immediate and deferred
/// handlers, and the response PDU they fill.
extension ServerCore {

    func handle(
        _ entry: CoAPResource, resource: OpaquePointer, session: OpaquePointer, request: OpaquePointer,
        query: UnsafePointer<coap_string_t>?, response: OpaquePointer
    ) {
        guard let method = CoAPMethod(rawValue: PDU.code(request)), let handler = entry.handlers[method] else {
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

    func handleDeferred(
        _ body: @escaping @Sendable (CoAPRequest) async throws -> CoAPResponse, _ method: CoAPMethod,
        _ entry: CoAPResource, resource: OpaquePointer, session: OpaquePointer, request: OpaquePointer,
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
            description: "\(method) \(entry.path)")
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
    func complete(_ id: UInt64, _ answer: CoAPResponse) {
        guard context != nil, var request = deferred[id], request.response == nil else { return }
        request.response = answer
        request.task = nil
        deferred[id] = request
        coap_async_trigger(request.async)
    }

    func makeRequest(
        _ method: CoAPMethod, _ entry: CoAPResource, session: OpaquePointer, pdu: OpaquePointer,
        options: PDU.RequestOptions
    ) -> CoAPRequest {
        var identity: String?
        if let bytes = coap_session_get_psk_identity(session)?.pointee, let start = bytes.s {
            identity = String(decoding: UnsafeBufferPointer(start: start, count: bytes.length), as: UTF8.self)
        }
        return CoAPRequest(
            method: method, path: entry.path, query: options.query, payload: PDU.payload(pdu),
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
    func write(
        _ answer: CoAPResponse, resource: OpaquePointer, session: OpaquePointer, request: OpaquePointer,
        query: UnsafePointer<coap_string_t>?, into response: OpaquePointer, block2: (num: UInt32, szx: UInt32)?
    ) {
        let payload = answer.payload
        guard answer.code.isSuccess, !payload.isEmpty else {
            // An error's diagnostic is short and whole, whatever block was asked for.
            writeWhole(answer, into: response)
            return
        }
        if let refusal = BlockWindow.refusal(block2, bodySize: payload.count) {
            writeWhole(.status(.badRequest, diagnostic: refusal), into: response)
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
            PayloadLease.retained(payload.storage, references: references))
        if added == 0 {
            logger.warning("coap_add_data_large_response failed", metadata: ["coap.bytes": "\(payload.count)"])
        }
    }

    /// Bytes a response needs besides its block: header, token and options.
    private static let blockHeadroom = 64

    /// One block of a GET answer (``BlockWindow``), with Block2, Size2 and ETag.
    func writeBlock(
        _ answer: CoAPResponse, session: OpaquePointer, into response: OpaquePointer,
        block2: (num: UInt32, szx: UInt32)?
    ) {
        let payload = answer.payload
        let window = BlockWindow.select(block2, bodySize: payload.count, room: coap_session_max_pdu_size(session) - Self.blockHeadroom)
        PDU.setCode(response, answer.code)
        let etag = answer.etag ?? payload.contentTag
        // Options in ascending number: libcoap appends them without sorting work.
        if etag != 0 { PDU.add(response, COAP_OPTION_ETAG, uint: etag) }
        if let location = answer.locationPath { PDU.add(response, COAP_OPTION_LOCATION_PATH, path: location) }
        PDU.add(response, COAP_OPTION_CONTENT_FORMAT, uint: UInt64(answer.contentFormat.rawValue))
        if let maxAge = answer.maxAge { PDU.add(response, COAP_OPTION_MAXAGE, uint: UInt64(maxAge)) }
        let bytes = payload.storage.buffer
        guard case .block(let num, let szx, let range, let more) = window else {
            if coap_add_data(response, bytes.count, bytes.baseAddress) != 0 { answer.sent?(bytes.count) }
            return
        }
        PDU.add(response, COAP_OPTION_BLOCK2, uint: UInt64(num) << 4 | (more ? 8 : 0) | UInt64(szx))
        PDU.add(response, COAP_OPTION_SIZE2, uint: UInt64(bytes.count))
        if coap_add_data(response, range.count, bytes.baseAddress! + range.lowerBound) != 0 { answer.sent?(range.count) }
    }

    /// A response in one PDU: code, ETag, Location-Path, Content-Format, Max-Age and body.
    func writeWhole(_ answer: CoAPResponse, into response: OpaquePointer) {
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
}

// MARK: - C callbacks

/// `coap_method_handler_t` for every method of every resource.
func serverRequestHandler(
    _ resource: OpaquePointer?, _ session: OpaquePointer?, _ request: OpaquePointer?,
    _ query: UnsafePointer<coap_string_t>?, _ response: OpaquePointer?
) {
    guard let resource, let session, let request, let response,
        let entryPointer = coap_resource_get_userdata(resource),
        let context = coap_session_get_context(session), let corePointer = coap_get_app_data(context)
    else { return }
    let entry = ResourceEntry.value(at: entryPointer)
    let core = Unmanaged<ServerCore>.fromOpaque(corePointer).takeUnretainedValue()
    core.handle(entry, resource: resource, session: session, request: request, query: query, response: response)
}
