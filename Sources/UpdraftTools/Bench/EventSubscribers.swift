import AsyncHTTPClient
import Foundation
import Logging
import Mosquitto
import NIOCore
import Synchronization
import UpdraftCore

/// What one subscriber of `updraft bench sse` saw: every event's seq with the wall-clock
/// time it arrived, in arrival order.
final class ArrivalLog: Sendable {
    private let arrivals = Mutex<[(seq: Int64, at: Date)]>([])

    func record(_ seqs: [Int64], at time: Date) {
        guard !seqs.isEmpty else { return }
        arrivals.withLock { log in
            for seq in seqs { log.append((seq, time)) }
        }
    }

    var entries: [(seq: Int64, at: Date)] { arrivals.withLock { $0 } }
    var highest: Int64 { arrivals.withLock { $0.last?.seq ?? 0 } }
}

/// A subscriber of `GET /v1/events/stream` (AsyncHTTPClient, streamed body): keeps the
/// `id:` of every event and when its bytes arrived. Only the ids are parsed: the bench
/// counts and times events, it does not read them.
final class SSESubscriber: Sendable {
    let log = ArrivalLog()
    private let reader = Mutex<Task<Void, Never>?>(nil)

    /// Opens the stream after `after` and reads it until ``close()``; throws when the server
    /// does not answer 200.
    static func open(_ client: HTTPClient, port: Int, token: String, after: Int64) async throws -> SSESubscriber {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/events/stream?after=\(after)")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "text/event-stream")
        let response = try await client.execute(request, timeout: .hours(1))
        guard response.status.code == 200 else {
            let body = try await response.body.collect(upTo: 1 << 16)
            throw UpdraftError("bench_setup", "The event stream answered \(response.status.code): \(String(buffer: body))")
        }
        let subscriber = SSESubscriber()
        subscriber.read(response.body)
        return subscriber
    }

    /// Records the ids of `body` until it ends, fails or ``close()`` cancels the reading.
    private func read(_ body: HTTPClientResponse.Body) {
        let log = log
        let task = Task {
            var lines = IDLines()
            do {
                for try await buffer in body { log.record(lines.feed(buffer.readableBytesView), at: Date()) }
            } catch {}
        }
        reader.withLock { $0 = task }
    }

    func close() async {
        let task = reader.withLock { $0 }
        task?.cancel()
        await task?.value
    }
}

/// Picks the `id: <seq>` lines out of an SSE byte stream cut anywhere.
struct IDLines {
    private var partial: [UInt8] = []
    private static let prefix = Array("id: ".utf8)

    mutating func feed(_ bytes: some Sequence<UInt8>) -> [Int64] {
        partial += bytes
        var seqs: [Int64] = []
        var start = 0
        while let newline = partial[start...].firstIndex(of: 0x0A) {
            let line = partial[start..<newline]
            if line.starts(with: Self.prefix), let seq = Int64(String(decoding: line.dropFirst(Self.prefix.count), as: UTF8.self)) {
                seqs.append(seq)
            }
            start = newline + 1
        }
        partial.removeFirst(start)
        return seqs
    }
}

/// The reference of `updraft bench sse`: the gateway's MQTT events topic, read through the
/// same broker by the events account (QoS 1), each message's `seq` with its arrival time.
final class MQTTEventsSubscriber: Sendable {
    let log = ArrivalLog()
    private let client: MosquittoClient
    private let loop: MosquittoEventLoop
    private let reader = Mutex<Task<Void, Never>?>(nil)

    private struct Numbered: Decodable { var seq: Int64 }

    init(options: MosquittoOptions, logger: Logger) {
        loop = MosquittoEventLoop(name: "bench-events")
        client = MosquittoClient(options: options, loop: loop, logger: logger)
    }

    func start(topic: String) async throws {
        try await client.connect()
        try await client.subscribe(topic, qos: .atLeastOnce)
        let (client, log) = (client, log)
        reader.withLock {
            $0 = Task {
                let decoder = JSONDecoder()
                for await message in client.messages {
                    if let event = try? decoder.decode(Numbered.self, from: Data(message.payload)) { log.record([event.seq], at: Date()) }
                }
            }
        }
    }

    func stop() async {
        await client.disconnect()
        await reader.withLock { $0 }?.value
        loop.shutdown()
    }
}
