import CMosquitto

/// libmosquitto's callbacks: they run inside `mosquitto_loop_read`/`write` on the loop
/// thread, with libmosquitto's callback mutex held (see ``ClientCore/flush()``).
extension ClientCore {
    func setCallbacks(_ handle: OpaquePointer) {
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

    /// CONNACK; `rc` is its return code (MQTT 5: reason code), not a `MOSQ_ERR_*`.
    private func didConnect(rc: Int32, flags: Int32) {
        guard state.phase == .connecting, let mosq else { return }
        guard rc == 0 else {
            let error = MosquittoError.refused(
                connack: rc, host: options.host, port: options.port, protocolVersion: options.protocolVersion)
            logger.error("broker refused the connection", metadata: ["mqtt.error": "\(error.message)"])
            if state.connackRefused(error, connectWaiting: !connectWaiters.isEmpty) {
                stop(error, abort: false)
            }
            return
        }
        resubscribe(mosq, sessionPresent: flags & 1 != 0)
    }

    private func didDisconnect(rc: Int32) {
        do throws(MosquittoError) {
            try MosquittoError.check(rc, "connection")
            connectionEnded(nil)
        } catch {
            connectionEnded(connectionError(error))
        }
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

    /// SUBACK; `granted` is the first granted QoS (MQTT 5: reason code), 0x80 and up a refusal.
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
        if let sessionPresent = state.subackReceived(mid: mid) {
            announce(sessionPresent: sessionPresent)
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
}
