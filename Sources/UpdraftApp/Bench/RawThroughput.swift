import Foundation
import Logging
import Mosquitto

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
    public static func measure(port: Int, size: Int, count: Int, window: Int, logger: Logger) async throws -> Result {
        let loopA = MosquittoEventLoop(name: "bench-pub")
        let loopB = MosquittoEventLoop(name: "bench-sub")
        defer {
            loopA.shutdown()
            loopB.shutdown()
        }
        let publisher = MosquittoClient(options: MosquittoOptions(clientID: "bench-pub", port: port), loop: loopA, logger: logger)
        let subscriber = MosquittoClient(options: MosquittoOptions(clientID: "bench-sub", port: port), loop: loopB, logger: logger)
        try await publisher.connect()
        try await subscriber.connect()
        try await subscriber.subscribe("bench/raw/#", qos: .atMostOnce)
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let start = ContinuousClock.now
        var received = 0
        var bytes = 0
        var iterator = subscriber.messages.makeAsyncIterator()
        var sent = 0
        while received < count {
            while sent < count && sent - received < window {
                publisher.publishNoWait(topic: "bench/raw/\(sent)", payload: payload, qos: .atMostOnce, retain: false)
                sent += 1
            }
            guard let message = await iterator.next() else { break }
            received += 1
            bytes += message.payload.count
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
