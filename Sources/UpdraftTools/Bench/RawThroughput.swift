import Foundation
import Logging
import Mosquitto
import Synchronization
import UpdraftApp
import UpdraftCore

/// The reference for `updraft bench mqtt`: one publisher streaming `count` messages of
/// `size` bytes to one subscriber through the same broker, with the same client library.
public enum RawThroughput {
    public struct Result: Sendable {
        public var messages: Int
        public var bytes: Int
        public var seconds: Double
        public var megabytesPerSecond: Double { Double(bytes) / 1_048_576 / seconds }
    }

    /// Keeps at most `window` messages in flight (as devices keep a window of chunks), so
    /// nothing is dropped by broker queue limits and the pipe stays full.
    ///
    /// - Parameters:
    ///   - publisher, subscriber: accounts the broker's ACL lets write and read `topic`
    ///     (nil: anonymous); QoS 0 publishes the ACL denies vanish without an error. With
    ///     `use_username_as_clientid`, two different accounts.
    ///   - stallTimeout: gives up when nothing arrives for this long.
    public static func measure(
        port: Int, publisher: (username: String, password: String?)?, subscriber: (username: String, password: String?)?,
        topic: String, size: Int, count: Int, window: Int, stallTimeout: Duration = .seconds(10), logger: Logger
    ) async throws -> Result {
        let loopA = MosquittoEventLoop(name: "bench-pub")
        let loopB = MosquittoEventLoop(name: "bench-sub")
        defer {
            loopA.shutdown()
            loopB.shutdown()
        }
        var publisherOptions = MosquittoOptions(clientID: "bench-pub", port: port)
        (publisherOptions.username, publisherOptions.password) = (publisher?.username, publisher?.password)
        var subscriberOptions = MosquittoOptions(clientID: "bench-sub", port: port)
        (subscriberOptions.username, subscriberOptions.password) = (subscriber?.username, subscriber?.password)
        let publisher = MosquittoClient(options: publisherOptions, loop: loopA, logger: logger)
        let subscriber = MosquittoClient(options: subscriberOptions, loop: loopB, logger: logger)
        try await publisher.connect()
        try await subscriber.connect()
        try await subscriber.subscribe(topic, qos: .atMostOnce)
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let start = ContinuousClock.now
        var received = 0
        var bytes = 0
        var iterator = subscriber.messages.makeAsyncIterator()
        var sent = 0
        let progress = Atomic<Int>(0)
        // QoS 0 may be dropped (ACL, broker limits): end the stream rather than wait forever.
        let watchdog = Task {
            var last = -1
            while !Task.isCancelled {
                try? await Task.sleep(for: stallTimeout)
                let now = progress.load(ordering: .relaxed)
                if now == last && !Task.isCancelled {
                    await subscriber.disconnect()
                    return
                }
                last = now
            }
        }
        defer { watchdog.cancel() }
        while received < count {
            while sent < count && sent - received < window {
                publisher.publishNoWait(topic: topic, payload: payload, qos: .atMostOnce, retain: false)
                sent += 1
            }
            guard let message = await iterator.next() else { break }
            received += 1
            bytes += message.payload.count
            progress.store(received, ordering: .relaxed)
        }
        guard received == count else {
            throw UpdraftError(
                "bench_stalled",
                "The raw stream stalled after \(received) of \(count) messages: the broker dropped QoS 0 messages. Check its log and ACL.")
        }
        let elapsed = ContinuousClock.now - start
        await publisher.disconnect()
        await subscriber.disconnect()
        return Result(messages: received, bytes: bytes, seconds: elapsed.seconds)
    }
}

extension Duration {
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
