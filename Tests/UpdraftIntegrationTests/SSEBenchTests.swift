import Foundation
import Testing
@testable import UpdraftTools

/// `updraft bench sse` at a small size: the shape of what it prints and that nothing is
/// lost. No timing is asserted (figures depend on the machine).
@Suite(.timeLimit(.minutes(4))) struct SSEBenchTests {
    @Test func smallRunDeliversEverySeqOnceToEverySubscriberAndTheReference() async throws {
        let bench = SSEBench(options: .init(subscribers: 5, devices: 5, imageBytes: 16 << 10), logger: Harness.logger)
        let result = try await bench.run { _, _ in }
        // A release to 5 devices: release and job events, offers, progress, installs.
        #expect(result.events >= 5 * 3)
        #expect(result.sse.subscribers == 5 && result.mqtt.subscribers == 1)
        #expect(result.sse.lost == 0 && result.sse.duplicates == 0)
        #expect(result.sse.count == result.events * 5)
        #expect(result.mqtt.lost == 0 && result.mqtt.count == result.events)
        #expect(result.sse.p50 <= result.sse.p99 && result.sse.p99 <= result.sse.max && result.sse.p50 > 0)
        let lines = result.report()
        #expect(lines.count == 6)
        #expect(lines[0].hasPrefix("| delivery | subscribers | deliveries | p50 ms | p99 ms | max ms | lost | duplicates |"))
        #expect(lines[2].hasPrefix("| SSE /v1/events/stream | 5 | \(result.events * 5) | "))
        #expect(lines[3].hasPrefix("| MQTT events topic (reference) | 1 | \(result.events) | "))
        #expect(lines[2...3].allSatisfy { $0.split(separator: "|").count == 8 && $0.hasSuffix("| 0 | 0 |") })
        #expect(lines[5] == "lost: 0")
    }

    /// The twin: a subscriber that misses an event or gets one twice is counted, and an
    /// arrival of a seq outside the run is ignored.
    @Test func missingAndRepeatedDeliveriesAreCounted() {
        let origin = Date(timeIntervalSince1970: 1_000_000)
        let times: [Int64: Date] = [1: origin, 2: origin, 3: origin]
        let whole = ArrivalLog()
        whole.record([1, 2, 3], at: origin + 0.010)
        let gappy = ArrivalLog()
        gappy.record([1, 3, 3, 99], at: origin + 0.020)
        let delivery = SSEBench.delivery([whole, gappy], times: times)
        #expect(delivery.lost == 1 && delivery.duplicates == 1 && delivery.count == 5)
        #expect(abs(delivery.p50 - 0.010) < 1e-6 && abs(delivery.max - 0.020) < 1e-6)
    }

    /// Ids cut anywhere across reads are still found, and only `id:` lines count.
    @Test func idLinesAcrossReadBoundaries() {
        var lines = IDLines()
        #expect(lines.feed(Array("retry: 2000\n: updraft events after 0\n\nid: 1\nevent: job.created\ndata: {\"id\": 5}\n\nid: 1".utf8)) == [1])
        #expect(lines.feed(Array("2\nevent: x\ndata: {}\n\n".utf8)) == [12])
        #expect(lines.feed(Array(": keep-alive\n\n".utf8)) == [])
    }
}
