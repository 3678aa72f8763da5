import CCoAP
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// DTLS on the loop thread: certificate names, the sessions of handshakes in progress,
/// and PSK lookups.
extension ServerCore {

    /// A peer's certificate passed the TLS checks; depth 0 is the peer's own.
    /// At depth 0, ``CoAPServer/PKI/acceptsCertificate`` may still refuse it.
    func certificateChecked(name: String, der: UnsafeBufferPointer<UInt8>, session: OpaquePointer, depth: UInt32, validated: Bool) -> Bool {
        guard validated else { return false }
        guard depth == 0 else { return true }
        if let accepts = configuration.pki?.acceptsCertificate, !accepts(Array(der)) {
            logger.notice("DTLS handshake rejected: certificate refused (revoked)", metadata: ["coap.certificate_cn": "\(name)"])
            return false
        }
        certificateNames[session] = name
        return true
    }

    func sessionEnded(_ session: OpaquePointer) {
        certificateNames[session] = nil
        handshaking[session] = nil
    }

    func sessionConnected(_ session: OpaquePointer) {
        handshaking[session] = nil
    }

    func sessionCreated(_ session: OpaquePointer) {
        guard coap_session_get_proto(session) == COAP_PROTO_DTLS, let address = coap_session_get_addr_remote(session)
        else { return }
        newHellos.append((address.pointee, coap_session_get_ifindex(session)))
    }

    /// Frees the hello sessions made since the last call: their ClientHello is answered
    /// (HelloVerifyRequest), and the cookie it carries is checked without them. Drops
    /// sessions whose handshake outlived ``CoAPServer/Configuration/handshakeTimeout``.
    func guardHandshakes(_ context: OpaquePointer, now: ContinuousClock.Instant) {
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
    func pskKey(for identity: coap_bin_const_t) -> UnsafePointer<coap_bin_const_t>? {
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

/// `coap_dtls_cn_callback_t`: a peer's certificate (or a CA above it) passed the TLS checks.
func serverCertificateName(
    _ cn: UnsafePointer<CChar>?, _ certificate: UnsafePointer<UInt8>?, _ length: Int, _ session: OpaquePointer?,
    _ depth: UInt32, _ validated: Int32, _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let cn, let session, let argument else { return 0 }
    let core = Unmanaged<ServerCore>.fromOpaque(argument).takeUnretainedValue()
    let der = UnsafeBufferPointer(start: certificate, count: certificate == nil ? 0 : length)
    return core.certificateChecked(name: String(cString: cn), der: der, session: session, depth: depth, validated: validated != 0) ? 1 : 0
}

/// `coap_event_handler_t`: follows DTLS sessions from hello to close.
func serverEventHandler(_ session: OpaquePointer?, _ event: coap_event_t) -> Int32 {
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
func serverPSKLookup(
    _ identity: UnsafeMutablePointer<coap_bin_const_t>?, _ session: OpaquePointer?, _ argument: UnsafeMutableRawPointer?
) -> UnsafePointer<coap_bin_const_t>? {
    guard let identity, let argument else { return nil }
    return Unmanaged<ServerCore>.fromOpaque(argument).takeUnretainedValue().pskKey(for: identity.pointee)
}
