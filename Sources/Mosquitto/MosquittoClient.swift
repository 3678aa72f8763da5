import Logging
import LoopSupport

/// A change of a client's connection.
public enum ConnectionEvent: Sendable {
    /// CONNACK accepted and every remembered subscription re-acknowledged.
    case connected(sessionPresent: Bool)
    /// The connection ended: `nil` after ``MosquittoClient/disconnect()``, the cause otherwise.
    case disconnected(MosquittoError?)
}

/// An MQTT 3.1.1 (or, with ``MosquittoOptions/protocolVersion``, MQTT 5) client over libmosquitto, driven by a ``MosquittoEventLoop``.
///
/// ```swift
/// let client = MosquittoClient(options: .init(clientID: "gw-1"), logger: logger)
/// try await client.connect()
/// try await client.subscribe("devices/+/status", qos: .atLeastOnce)
/// for await message in client.messages { ... }
/// ```
///
/// Subscriptions are remembered and re-sent after every reconnect. QoS 1
/// publishes that are in flight when the connection drops are re-sent by
/// libmosquitto after reconnecting, and their `publish` calls return on the
/// PUBACK. Dropping the last reference closes the client (DISCONNECT if
/// possible).
public final class MosquittoClient: Sendable {
    public let options: MosquittoOptions
    public let loop: MosquittoEventLoop
    /// Connection changes, newest 64 kept if not consumed. Single consumer.
    public let connectionEvents: AsyncStream<ConnectionEvent>

    private let core: ClientCore
    private let inbox: Inbox
    private let status: ClientStatus

    public init(options: MosquittoOptions, loop: MosquittoEventLoop = .shared, logger: Logger) {
        var logger = logger
        logger[metadataKey: "mqtt.client_id"] = "\(options.clientID)"
        let (events, continuation) = AsyncStream.makeStream(
            of: ConnectionEvent.self, bufferingPolicy: .bufferingNewest(64))
        let queue = loop.handle.queue
        let inbox = Inbox(capacity: options.inboxCapacity, wake: { queue.wake() })
        let status = ClientStatus()
        self.options = options
        self.loop = loop
        self.connectionEvents = events
        self.inbox = inbox
        self.status = status
        self.core = ClientCore(
            options: options, logger: logger, inbox: inbox, status: status, events: continuation,
            loop: loop.core)
    }

    deinit {
        let core = self.core
        loop.execute { core.close(reason: "the MosquittoClient was released") }
    }

    /// Received messages, in order. See ``MosquittoMessages``.
    public var messages: MosquittoMessages { MosquittoMessages(inbox: inbox) }

    /// `true` between the `.connected` and `.disconnected` events.
    public var isConnected: Bool { status.connected.load(ordering: .acquiring) }

    /// ``publishNoWait(topic:payload:qos:retain:)`` calls that failed (logged once per connection).
    public var failedPublishCount: Int { status.failedPublishes.load(ordering: .relaxed) }

    /// Messages received but not yet consumed (at most about ``MosquittoOptions/inboxCapacity``).
    package var bufferedCount: Int { inbox.count }
    /// The highest ``bufferedCount`` seen.
    package var peakBufferedCount: Int { inbox.peakCount }

    // MARK: Connection

    /// Connects and returns once the broker accepted (CONNACK 0) and the
    /// remembered subscriptions are acknowledged. While the broker cannot be
    /// reached, retries with the reconnect backoff until `timeout`.
    /// - Throws: ``MosquittoError``: ``MosquittoError/isConnectionRefused`` when the
    ///   broker refused (e.g. bad credentials, no retry), ``MosquittoError/isTimeout``
    ///   when `timeout` passed; `CancellationError` if the task is cancelled.
    public func connect(timeout: Duration = .seconds(10)) async throws {
        try await perform("connect") { core, completion in core.connect(completion, timeout: timeout) }
    }

    /// Sends DISCONNECT (so no will is published), stops reconnecting and
    /// ends ``messages`` after the buffered ones. The client cannot connect again.
    public func disconnect() async {
        try? await perform("disconnect") { core, completion in core.disconnect(completion) }
    }

    /// Test and simulator hook: ends the TCP connection without DISCONNECT,
    /// as a network failure would. The broker publishes the will and the
    /// reconnect policy applies.
    public func simulateNetworkDrop() {
        let core = self.core
        loop.execute { core.simulateNetworkDrop() }
    }

    // MARK: Subscriptions

    /// Subscribes and returns on SUBACK. The filter is remembered and
    /// re-subscribed after every reconnect; during a reconnect the call waits
    /// for the re-subscription.
    public func subscribe(_ filter: String, qos: QoS = .atLeastOnce) async throws {
        try await perform("subscribe") { core, completion in core.subscribe(filter, qos: qos, completion) }
    }

    /// Unsubscribes and returns on UNSUBACK; the filter is forgotten at once.
    public func unsubscribe(_ filter: String) async throws {
        try await perform("unsubscribe") { core, completion in core.unsubscribe(filter, completion) }
    }

    // MARK: Publishing

    /// Publishes `payload` (contiguous collections such as `[UInt8]` and
    /// `ArraySlice<UInt8>` are handed to libmosquitto without copying).
    ///
    /// QoS 0 returns once libmosquitto has the message; QoS 1 returns on
    /// PUBACK. During a reconnect the call waits for the connection.
    public func publish(
        topic: String, payload: some Collection<UInt8> & Sendable, qos: QoS, retain: Bool = false
    ) async throws {
        try await perform("publish") { core, completion in
            core.publish(topic: topic, payload: payload, qos: qos, retain: retain, completion)
        }
    }

    /// Hands a publish to the event loop now, in call order, and returns a receipt to await
    /// its acknowledgement later (PUBACK for QoS 1). A caller keeps several publishes in
    /// flight in a known order, which concurrent ``publish(topic:payload:qos:retain:)``
    /// calls from several tasks do not guarantee. While reconnecting the publish waits for
    /// the connection; in-flight QoS 1 publishes are re-sent after a reconnect.
    public func enqueuePublish(
        topic: String, payload: some Collection<UInt8> & Sendable, qos: QoS, retain: Bool = false
    ) -> PublishReceipt {
        let completion = Completion<Void>()
        let core = self.core
        if !loop.execute({ core.publish(topic: topic, payload: payload, qos: qos, retain: retain, completion) }) {
            completion.fail(MosquittoError.notConnected("publish", "event loop \(loop.name) is shut down"))
        }
        return PublishReceipt(completion: completion)
    }

    /// Enqueues a publish and returns at once, for hot paths such as streaming
    /// firmware chunks. Ordering with other publishes of this client is kept.
    /// Failures (including "not connected") are logged and counted in
    /// ``failedPublishCount``.
    public func publishNoWait(
        topic: String, payload: some Collection<UInt8> & Sendable, qos: QoS, retain: Bool = false
    ) {
        let core = self.core
        let accepted = loop.execute {
            core.publish(topic: topic, payload: payload, qos: qos, retain: retain, nil)
        }
        if !accepted {
            status.failedPublishes.add(1, ordering: .relaxed)
        }
    }

    /// Enqueues several publishes in one hand-over to the event loop: one wake-up for a
    /// window of firmware chunks instead of one per chunk. Same ordering and failure
    /// accounting as ``publishNoWait(topic:payload:qos:retain:)``.
    public func publishNoWait<Payload: Collection<UInt8> & Sendable>(
        _ messages: [(topic: String, payload: Payload)], qos: QoS
    ) {
        guard !messages.isEmpty else { return }
        let core = self.core
        let accepted = loop.execute {
            for message in messages {
                core.publish(topic: message.topic, payload: message.payload, qos: qos, retain: false, nil)
            }
        }
        if !accepted {
            status.failedPublishes.add(messages.count, ordering: .relaxed)
        }
    }

    /// Like ``publishNoWait(_:qos:)`` at QoS 0, and tells when the batch left: `written`
    /// gets `true` once libmosquitto wrote the last packet to the socket, `false` when the
    /// batch was dropped (not connected, or the connection ended first). Called once, on the
    /// event loop's thread: keep it short. The base for flow control of large publishes:
    /// bytes handed over but not yet written are memory the caller is responsible for.
    public func publishNoWait<Payload: Collection<UInt8> & Sendable>(
        _ messages: [(topic: String, payload: Payload)], written: @escaping @Sendable (Bool) -> Void
    ) {
        let core = self.core
        let accepted = loop.execute { core.publishBatch(messages, written: written) }
        if !accepted {
            status.failedPublishes.add(messages.count, ordering: .relaxed)
            written(false)
        }
    }

    // MARK: -

    private func perform(
        _ operation: String, _ body: @escaping @Sendable (ClientCore, Completion<Void>) -> Void
    ) async throws {
        let completion = Completion<Void>()
        let core = self.core
        guard loop.execute({ body(core, completion) }) else {
            throw MosquittoError.notConnected(operation, "event loop \(loop.name) is shut down")
        }
        try await completion.wait()
    }
}

/// A publish handed over by ``MosquittoClient/enqueuePublish(topic:payload:qos:retain:)``.
public struct PublishReceipt: Sendable {
    let completion: Completion<Void>

    /// Returns on PUBACK (QoS 1) or once libmosquitto has the message (QoS 0); throws when
    /// the client gave up (disconnected, reconnecting disabled) or the task was cancelled.
    public func acknowledged() async throws {
        try await completion.wait()
    }
}
