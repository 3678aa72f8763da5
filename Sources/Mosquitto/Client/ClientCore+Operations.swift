import CMosquitto
import LoopSupport

/// Subscriptions and publishes: commands from the client's API, on the loop thread.
extension ClientCore {
    func subscribe(_ filter: String, qos: QoS, _ completion: Completion<Void>) {
        loop.preconditionInLoop()
        if let refusal = state.refusal(of: "subscribe") { return completion.fail(refusal) }
        do throws(MosquittoError) {
            try MosquittoError.check(mosquitto_sub_topic_check(filter), "subscribe")
        } catch {
            return completion.fail(
                MosquittoError(code: error.code, operation: "subscribe", message: "invalid topic filter \"\(filter)\""))
        }
        state.remember(filter, qos: qos)
        subscribeWaiters[filter, default: []].append(completion)
        // Not connected yet: the subscription goes out with the re-subscriptions on CONNACK.
        guard state.isConnected, let mosq else { return }
        var mid: Int32 = 0
        do throws(MosquittoError) {
            try MosquittoError.check(mosquitto_subscribe(mosq, &mid, filter, qos.rawValue), "subscribe \(filter)")
            subscribeMids[mid] = filter
            flush()
        } catch where !error.isConnectionFailure {
            state.forget(filter)
            for completion in subscribeWaiters.removeValue(forKey: filter) ?? [] { completion.fail(error) }
        } catch {}
    }

    func unsubscribe(_ filter: String, _ completion: Completion<Void>) {
        loop.preconditionInLoop()
        if let refusal = state.refusal(of: "unsubscribe") { return completion.fail(refusal) }
        state.forget(filter)
        // A subscribe still waiting for its SUBACK is overtaken by this unsubscribe.
        for waiter in subscribeWaiters.removeValue(forKey: filter) ?? [] { waiter.succeed() }
        pendingUnsubscribes[filter, default: []].append(completion)
        guard state.isConnected, let mosq else { return }
        var mid: Int32 = 0
        do throws(MosquittoError) {
            try MosquittoError.check(mosquitto_unsubscribe(mosq, &mid, filter), "unsubscribe \(filter)")
            unsubscribeMids[mid] = filter
            flush()
        } catch where !error.isConnectionFailure {
            for completion in pendingUnsubscribes.removeValue(forKey: filter) ?? [] { completion.fail(error) }
        } catch {}
    }

    /// `completion` nil: fire-and-forget (`publishNoWait`), failures are counted.
    func publish<Payload: Collection<UInt8> & Sendable>(
        topic: String, payload: Payload, qos: QoS, retain: Bool, _ completion: Completion<Void>?
    ) {
        loop.preconditionInLoop()
        switch state.publishRequested(waits: completion != nil) {
        case .fail(let error):
            publishFailed(error, completion)
        case .send:
            sendPublish(topic: topic, payload: payload, qos: qos, retain: retain, completion)
        case .park:
            guard let completion else { return }
            parked.append((completion, { [unowned self] in
                self.sendPublish(topic: topic, payload: payload, qos: qos, retain: retain, completion)
            }))
        }
    }

    /// Returns the mid when libmosquitto took the message.
    @discardableResult
    private func sendPublish<Payload: Collection<UInt8>>(
        topic: String, payload: Payload, qos: QoS, retain: Bool, _ completion: Completion<Void>?
    ) -> Int32? {
        guard let mosq else { return nil }
        var mid: Int32 = 0
        let rc: Int32 =
            payload.withContiguousStorageIfAvailable { bytes in
                Self.publish(mosq, &mid, topic, UnsafeRawBufferPointer(bytes), qos, retain)
            } ?? Array(payload).withUnsafeBytes { bytes in
                Self.publish(mosq, &mid, topic, bytes, qos, retain)
            }
        defer { flush() }
        do throws(MosquittoError) {
            try MosquittoError.check(rc, "publish to \(topic)")
        } catch where qos == .atLeastOnce && mid != 0 && error.code != MOSQ_ERR_NOMEM.rawValue {
            // libmosquitto queued it before the write failed and resends it after
            // reconnecting; PUBACK then completes the waiter (or the loss fails it).
            if let completion {
                publishWaiters[mid] = completion
            }
            return nil
        } catch {
            publishFailed(error, completion)
            return nil
        }
        if qos == .atLeastOnce, let completion {
            publishWaiters[mid] = completion
        } else {
            completion?.succeed()
        }
        return mid
    }

    /// Publishes a batch at QoS 0 and calls `written(true)` once its last packet was
    /// written to the socket (on_publish; packets leave in order), `written(false)` when
    /// it cannot be: not connected, refused, or dropped with the connection.
    func publishBatch<Payload: Collection<UInt8> & Sendable>(
        _ messages: [(topic: String, payload: Payload)], written: @escaping @Sendable (Bool) -> Void
    ) {
        loop.preconditionInLoop()
        guard state.isConnected, state.isAnnounced, !messages.isEmpty else {
            for message in messages { publish(topic: message.topic, payload: message.payload, qos: .atMostOnce, retain: false, nil) }
            return written(false)
        }
        writtenDuringPublish = []
        defer { writtenDuringPublish = nil }
        var last: Int32?
        for message in messages {
            last = sendPublish(topic: message.topic, payload: message.payload, qos: .atMostOnce, retain: false, nil)
        }
        guard let last, state.isConnected else { return written(false) }
        if writtenDuringPublish?.contains(last) == true {
            written(true)
        } else {
            writeWaiters[last] = written
        }
    }

    private static func publish(
        _ mosq: OpaquePointer, _ mid: inout Int32, _ topic: String, _ bytes: UnsafeRawBufferPointer, _ qos: QoS,
        _ retain: Bool
    ) -> Int32 {
        // MQTT's limit; also keeps the Int32 length exact.
        guard bytes.count <= 268_435_455 else { return MOSQ_ERR_PAYLOAD_SIZE.rawValue }
        return mosquitto_publish(mosq, &mid, topic, Int32(bytes.count), bytes.baseAddress, qos.rawValue, retain)
    }

    private func publishFailed(_ error: MosquittoError, _ completion: Completion<Void>?) {
        if let completion {
            completion.fail(error)
            return
        }
        status.failedPublishes.add(1, ordering: .relaxed)
        if !reportedNoWaitFailure {
            reportedNoWaitFailure = true
            logger.warning("publishNoWait failed; further failures are only counted until reconnected",
                           metadata: ["mqtt.error": "\(error)"])
        } else {
            logger.trace("publishNoWait failed", metadata: ["mqtt.error": "\(error)"])
        }
    }

    /// Batches whose packets libmosquitto dropped with the connection are not written.
    func releaseWriteWaiters() {
        let waiters = writeWaiters
        writeWaiters.removeAll()
        for waiter in waiters.values { waiter(false) }
    }
}

extension MosquittoError {
    /// The connection is gone: the operation is re-sent after reconnecting, not failed.
    var isConnectionFailure: Bool {
        code == MOSQ_ERR_NO_CONN.rawValue || code == MOSQ_ERR_CONN_LOST.rawValue || code == MOSQ_ERR_ERRNO.rawValue
    }
}
