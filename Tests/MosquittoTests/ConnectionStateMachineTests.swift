import Testing

@testable import Mosquitto

/// The connection lifecycle without a broker: every event method is called with an
/// injected instant and its returned action checked.
@Suite("ConnectionStateMachine")
struct ConnectionStateMachineTests {
    let start = ContinuousClock.now
    let policy = ReconnectPolicy(initialDelay: .milliseconds(100), maxDelay: .seconds(5))

    func machine(reconnect: ReconnectPolicy? = nil) -> ConnectionStateMachine {
        ConnectionStateMachine(endpoint: "127.0.0.1:1883", reconnect: reconnect ?? policy)
    }

    /// A machine whose connection is up and announced.
    func connected(subscriptions: [String] = []) -> ConnectionStateMachine {
        var state = machine()
        for filter in subscriptions { state.remember(filter, qos: .atLeastOnce) }
        let result1 = state.connectRequested()
        #expect(result1 == .startFirstAttempt)
        state.attemptStarting()
        _ = state.connackAccepted()
        let result2 = state.resubscriptionsSent(mids: [], sessionPresent: false)
        #expect(result2)
        state.announce()
        return state
    }

    @Test("connect from idle starts the first attempt; while it runs, further connects wait")
    func connectFromIdle() {
        var state = machine()
        #expect(state.refusal(of: "subscribe") != nil)
        let result3 = state.connectRequested()
        #expect(result3 == .startFirstAttempt)
        state.attemptStarting()
        #expect(state.phase == .connecting)
        #expect(state.isSocketActive)
        let result4 = state.connectRequested()
        #expect(result4 == .wait)
        #expect(state.refusal(of: "subscribe") == nil)
    }

    @Test("CONNACK with remembered subscriptions announces only after the last re-subscription's SUBACK")
    func resubscribeThenAnnounce() {
        var state = machine()
        state.remember("a/#", qos: .atLeastOnce)
        state.remember("b", qos: .atMostOnce)
        state.remember("a/#", qos: .atMostOnce)  // updates in place, keeps the order
        _ = state.connectRequested()
        state.attemptStarting()
        let resend = state.connackAccepted()
        #expect(resend.map(\.filter) == ["a/#", "b"])
        #expect(resend.map(\.qos) == [.atMostOnce, .atMostOnce])
        let result5 = state.resubscriptionsSent(mids: [7, 8], sessionPresent: true)
        #expect(!result5)
        #expect(state.publishRequested(waits: true) == .park)
        let result6 = state.subackReceived(mid: 7)
        #expect(result6 == nil)
        let result7 = state.subackReceived(mid: 99)
        #expect(result7 == nil)
        let result8 = state.subackReceived(mid: 8)
        #expect(result8 == true)
        state.announce()
        #expect(state.isAnnounced)
        let result9 = state.connectRequested()
        #expect(result9 == .succeed)
        #expect(state.publishRequested(waits: false) == .send)
    }

    @Test("a lost connection retries with backoff, and the retry instant comes back from tick")
    func lossSchedulesRetry() {
        var state = connected()
        let lost = MosquittoError(code: 7, operation: "connection", message: "lost")
        let action = state.connectionEnded(lost, connectWaiting: false, now: start)
        guard case .retry(let at, let wasAnnounced) = action else {
            Issue.record("expected a retry, got \(action)")
            return
        }
        #expect(wasAnnounced)
        // The first delay is drawn from the upper half of the initial delay.
        #expect(at >= start + .milliseconds(50) && at <= start + .milliseconds(100))
        #expect(state.nextDeadline == at)
        #expect(!state.isSocketActive)
        let result10 = state.tick(now: at - .milliseconds(1))
        #expect(result10 == .none)
        let result11 = state.tick(now: at)
        #expect(result11 == .reconnect)
        state.attemptStarting()
        // A second failure in the series waits longer (still bounded by maxDelay).
        guard case .retry(let second, false) = state.connectionEnded(lost, connectWaiting: false, now: start) else {
            Issue.record("expected a second retry")
            return
        }
        #expect(second >= start + .milliseconds(100) && second <= start + .milliseconds(200))
        #expect(state.publishRequested(waits: false) != .send)
        let result12 = state.connectionEnded(lost, connectWaiting: false, now: start)
        #expect(result12 == .none)
    }

    @Test("with reconnecting disabled, a loss stops and fails what waits; connect() still retries")
    func reconnectDisabled() {
        var state = machine(reconnect: .disabled)
        _ = state.connectRequested()
        state.attemptStarting()
        guard case .retry = state.connectionEnded(nil, connectWaiting: true, now: start) else {
            Issue.record("connect() retries until its timeout")
            return
        }
        state.attemptStarting()
        _ = state.connackAccepted()
        _ = state.resubscriptionsSent(mids: [], sessionPresent: false)
        state.announce()
        let result13 = state.connectionEnded(nil, connectWaiting: false, now: start)
        #expect(result13 == .stop(nil, wasAnnounced: true))
        #expect(state.phase == .idle)
        if case .fail = state.publishRequested(waits: true) {} else { Issue.record("idle publish must fail") }
    }

    @Test("a CONNACK refusal answers a waiting connect(); without a waiter the next on_disconnect retries")
    func refusal() {
        let refused = MosquittoError(
            code: 5, operation: "connect", message: "not authorised", connackCode: 5)
        var waiting = machine()
        _ = waiting.connectRequested()
        waiting.attemptStarting()
        let result14 = waiting.connackRefused(refused, connectWaiting: true)
        #expect(result14)
        #expect(waiting.phase == .idle)

        var reconnecting = connected()
        _ = reconnecting.connectionEnded(nil, connectWaiting: false, now: start)
        reconnecting.attemptStarting()
        let result15 = reconnecting.connackRefused(refused, connectWaiting: false)
        #expect(!result15)
        // The on_disconnect that follows says less than the refusal: the refusal is kept.
        let closed = MosquittoError(code: 5, operation: "connection", message: "closed")
        guard case .retry = reconnecting.connectionEnded(closed, connectWaiting: false, now: start) else {
            Issue.record("expected a retry")
            return
        }
        #expect(reconnecting.lastError == refused)
        let (error, stop) = reconnecting.connectTimedOut(waitersLeft: false)
        #expect(error.isTimeout)
        #expect(error.message.contains("not authorised"))
        #expect(stop)
        #expect(reconnecting.phase == .idle)
    }

    @Test("a connect timeout keeps trying while other waiters remain")
    func timeoutWithWaitersLeft() {
        var state = machine()
        _ = state.connectRequested()
        state.attemptStarting()
        let (error, stop) = state.connectTimedOut(waitersLeft: true)
        #expect(error.message == "no accepted CONNACK from 127.0.0.1:1883 in time")
        #expect(!stop)
        #expect(state.phase == .connecting)
    }

    @Test("disconnect: DISCONNECT when connected, closes at once otherwise, then is terminal")
    func disconnect() {
        var state = connected()
        let result16 = state.disconnectRequested(now: start)
        #expect(result16 == .sendDisconnect)
        #expect(state.nextDeadline == start + .seconds(2))
        let result17 = state.disconnectRequested(now: start)
        #expect(result17 == .wait)
        let result18 = state.tick(now: start + .seconds(2))
        #expect(result18 == .closeAfterGrace)
        // on_disconnect of our own DISCONNECT closes.
        let result19 = state.connectionEnded(nil, connectWaiting: false, now: start)
        #expect(result19 == .finishClose)
        let result20 = state.close()
        #expect(result20 == true)
        let result21 = state.close()
        #expect(result21 == nil)
        let result22 = state.disconnectRequested(now: start)
        #expect(result22 == .succeed)
        let result23 = state.connectRequested()
        #expect(result23 == .fail(reason: "the client was disconnected; create a new client"))
        #expect(state.refusal(of: "unsubscribe")?.isNotConnected == true)

        var idle = machine()
        let result24 = idle.disconnectRequested(now: start)
        #expect(result24 == .closeNow)
        let result25 = idle.close()
        #expect(result25 == false)
    }

    @Test("closing (owner gone, loop shut down) sends DISCONNECT only when connected")
    func closeRequested() {
        var state = connected()
        let result26 = state.closeRequested(now: start)
        #expect(result26)
        #expect(state.isDisconnecting)
        var idle = machine()
        let result27 = idle.closeRequested(now: start)
        #expect(!result27)
    }

    @Test("publish: sent when announced, parked while reconnecting, fire-and-forget refused while down")
    func publish() {
        var state = connected(subscriptions: ["x"])
        #expect(state.publishRequested(waits: false) == .send)
        _ = state.connectionEnded(nil, connectWaiting: false, now: start)
        #expect(state.publishRequested(waits: true) == .park)
        guard case .fail(let error) = state.publishRequested(waits: false) else {
            Issue.record("fire-and-forget publishes are not parked")
            return
        }
        #expect(error.message.contains("reconnecting"))
        state.forget("x")
        #expect(state.subscriptions.isEmpty)
    }
}
