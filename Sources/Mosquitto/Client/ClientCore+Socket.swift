import CMosquitto
import LoopSupport

#if canImport(Glibc)
import Glibc
#endif

/// Polling, reading and writing the socket, keep-alive and timers. Called by the loop.
extension ClientCore {
    /// Reads per ready event before the loop serves other clients.
    private static let readBurst = 64

    var socket: Int32 {
        guard let mosq else { return -1 }
        return mosquitto_socket(mosq)
    }

    func pollInterest() -> (fd: Int32, events: Int16)? {
        loop.preconditionInLoop()
        guard let mosq, state.isSocketActive else { return nil }
        let fd = mosquitto_socket(mosq)
        guard fd >= 0 else { return nil }
        var events: Int32 = 0
        if mayRead {
            events |= Int32(POLLIN)
        }
        if mosquitto_want_write(mosq) {
            events |= Int32(POLLOUT)
        }
        return (fd, Int16(events))
    }

    /// Reading stops while the inbox is full, except until the connection is
    /// announced: CONNACK and the SUBACKs of re-subscriptions must get through.
    private var mayRead: Bool {
        !state.isAnnounced || !inbox.isReadPaused
    }

    func handle(fd: Int32, revents: Int32) {
        loop.preconditionInLoop()
        let hangup = revents & Int32(POLLHUP | POLLERR) != 0
        if revents & Int32(POLLIN) != 0 || hangup {
            read(fd: fd, hangup: hangup)
        }
        write(fd: fd, force: revents & Int32(POLLOUT) != 0)
    }

    /// Reads packets while data is waiting, up to `readBurst`. After a hang-up
    /// the rest of the socket is read regardless of the inbox, so that nothing
    /// the broker already sent is lost; the socket buffer bounds the overshoot.
    private func read(fd: Int32, hangup: Bool) {
        var budget = Self.readBurst
        while let mosq, state.isSocketActive, mosquitto_socket(mosq) == fd {
            do throws(MosquittoError) {
                try MosquittoError.check(mosquitto_loop_read(mosq, 1), "connection")
            } catch {
                // Usually on_disconnect already ran; this covers failures that skip it (TLS handshake).
                connectionEnded(connectionError(error))
                return
            }
            budget -= 1
            guard budget > 0, hangup || mayRead, Self.hasPendingInput(fd) else { return }
        }
    }

    private func write(fd: Int32, force: Bool) {
        guard let mosq, state.isSocketActive, mosquitto_socket(mosq) == fd else { return }
        guard force || mosquitto_want_write(mosq) else { return }
        do throws(MosquittoError) {
            try MosquittoError.check(mosquitto_loop_write(mosq, 1), "connection")
        } catch {
            connectFailed(error)
        }
    }

    /// Sends what libmosquitto queued: packets created inside callbacks are
    /// only queued, and a partial write leaves the rest queued.
    ///
    /// Not from inside a callback: libmosquitto holds its callback mutex there
    /// and `loop_write` takes it again (on_publish). The caller of the
    /// read/write that ran the callback flushes once it returns.
    func flush() {
        guard callbackDepth == 0 else { return }
        let fd = socket
        if fd >= 0 {
            write(fd: fd, force: false)
        }
    }

    private static func hasPendingInput(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
    }

    /// Keep-alive (PINGREQ, broker timeout). Called about once a second.
    ///
    /// Skipped while reading is paused for a slow consumer: the PINGRESP would sit
    /// unread behind the paused messages and libmosquitto would call the connection
    /// lost after one keep-alive interval, dropping and re-fetching the whole backlog
    /// in a loop. A consumer stalled for 1.5 x keep-alive is dropped by the broker
    /// instead, which is the broker's call to make.
    func misc() {
        loop.preconditionInLoop()
        guard let mosq, state.isSocketActive, mosquitto_socket(mosq) >= 0 else { return }
        guard mayRead else { return }
        do throws(MosquittoError) {
            try MosquittoError.check(mosquitto_loop_misc(mosq), "connection")
        } catch where error.code != MOSQ_ERR_NO_CONN.rawValue {
            connectionEnded(connectionError(error))
            return
        } catch {}
        flush()
    }

    /// The earliest instant `tick` has something to do.
    var nextDeadline: ContinuousClock.Instant? {
        var next = state.nextDeadline
        for waiter in connectWaiters where next == nil || waiter.deadline < next! {
            next = waiter.deadline
        }
        return next
    }

    func tick(now: ContinuousClock.Instant) {
        loop.preconditionInLoop()
        switch state.tick(now: now) {
        case .reconnect:
            startAttempt(first: false)
        case .closeAfterGrace:
            logger.debug("DISCONNECT not flushed in time; closing")
            abortSocket()
            finishClose(reason: "the client was disconnected")
        case .none:
            break
        }
        guard connectWaiters.contains(where: { $0.deadline <= now }) else { return }
        var expired: [Completion<Void>] = []
        connectWaiters.removeAll { waiter in
            guard waiter.deadline <= now else { return false }
            expired.append(waiter.completion)
            return true
        }
        let (error, stop) = state.connectTimedOut(waitersLeft: !connectWaiters.isEmpty)
        for completion in expired {
            completion.fail(error)
        }
        if stop {
            logger.warning("connect timed out", metadata: ["mqtt.error": "\(error.message)"])
            self.stop(error, abort: true)
        }
    }
}
