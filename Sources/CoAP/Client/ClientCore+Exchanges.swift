import CCoAP
import CLoopSupport
import Logging
import LoopSupport

#if canImport(Glibc)
import Glibc
#endif

/// Exchanges on the loop thread: a request goes out as a PDU, its response or its
/// deadline finishes it.
extension ClientCore {

    func start(
        _ request: CoAPClientRequest, exchange id: UInt64, session sessionID: UInt64, waiter: Waiter, timeout: Duration
    ) {
        loop.core.preconditionInLoop()
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

    func makePDU(_ request: CoAPClientRequest, session: OpaquePointer, observe: Bool, operation: String)
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
            let lease = PayloadLease.retained(payload.storage, references: references)
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
        loop.core.preconditionInLoop()
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
    func finish(_ id: UInt64, _ result: Result<CoAPClientResponse?, any Error>) {
        guard let exchange = exchanges.removeValue(forKey: id) else { return }
        exchangeIDs[exchange.key] = nil
        Self.finish(exchange.waiter, result)
    }

    static func finish(_ waiter: Waiter, _ result: Result<CoAPClientResponse?, any Error>) {
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
        loop.core.preconditionInLoop()
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
}
