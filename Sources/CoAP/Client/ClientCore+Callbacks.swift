import CCoAP
import CLoopSupport
import Logging
import LoopSupport

#if canImport(Glibc)
import Glibc
#endif

/// What libcoap reports on the loop thread inside `coap_io_process`: responses,
/// failures to deliver, session events.
extension ClientCore {

    func didReceive(_ session: OpaquePointer, _ pdu: OpaquePointer) -> coap_response_t {
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

    func didFail(_ session: OpaquePointer, sent: OpaquePointer?, reason: coap_nack_reason_t) {
        let error = Self.error(for: reason, endpoint: sessionIDs[session].flatMap { sessions[$0] }?.endpoint)
        if let sent, let id = exchangeIDs[TokenKey(session: session, token: PDU.token(sent))] {
            finish(id, .failure(error))
        }
        if reason == COAP_NACK_TLS_FAILED {
            sessionFailed(session, error)
        }
    }

    func didEvent(_ session: OpaquePointer, _ event: coap_event_t) {
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
        let (code, operation, message): (CoAPError.Code, String, String) =
            switch reason {
            case COAP_NACK_TLS_FAILED:
                (.sessionFailed, "DTLS", "the DTLS session with \(peer) failed or was closed; check the PSK identity and key")
            case COAP_NACK_TOO_MANY_RETRIES:
                (.timeout, "request", "\(peer) did not acknowledge after all retransmissions; check that it is reachable")
            case COAP_NACK_RST:
                (.sendFailed, "request", "\(peer) answered with a reset; it rejected the message")
            case COAP_NACK_ICMP_ISSUE:
                (.sendFailed, "request", "\(peer) is unreachable (ICMP); check the address and that a server listens there")
            default:
                (.sendFailed, "request", "the request to \(peer) could not be delivered")
            }
        return CoAPError(code: code, operation: operation, message: message)
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

    static func from(_ session: OpaquePointer?) -> ClientCore? {
        guard let session, let context = coap_session_get_context(session), let pointer = coap_get_app_data(context)
        else { return nil }
        return Unmanaged<ClientCore>.fromOpaque(pointer).takeUnretainedValue()
    }
}

// MARK: - C callbacks

func clientResponseHandler(
    _ session: OpaquePointer?, _ sent: OpaquePointer?, _ received: OpaquePointer?, _ mid: coap_mid_t
) -> coap_response_t {
    guard let session, let received, let core = ClientCore.from(session) else { return COAP_RESPONSE_OK }
    return core.didReceive(session, received)
}

func clientNackHandler(
    _ session: OpaquePointer?, _ sent: OpaquePointer?, _ reason: coap_nack_reason_t, _ mid: coap_mid_t
) {
    guard let session, let core = ClientCore.from(session) else { return }
    core.didFail(session, sent: sent, reason: reason)
}

func clientEventHandler(_ session: OpaquePointer?, _ event: coap_event_t) -> Int32 {
    guard let session, let core = ClientCore.from(session) else { return 0 }
    core.didEvent(session, event)
    return 0
}
