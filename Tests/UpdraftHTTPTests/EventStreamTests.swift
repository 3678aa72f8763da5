import AsyncHTTPClient
import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftHTTP

/// `GET /v1/events/stream` on a real server and store: the log then live events with
/// `id:` = seq, resume after `Last-Event-ID`, filters, keep-alives, and bad input.
@Suite(.timeLimit(.minutes(2))) struct EventStreamTests {
    static func events(_ count: Int, from first: Int = 0, release: String? = nil) -> [UpdraftEvent] {
        (first..<(first + count)).map { i in
            UpdraftEvent(
                kind: i % 3 == 0 ? .deviceOnline : .jobTransition, time: Date(), deviceID: try! DeviceID(validating: "d-\(i % 4)"),
                releaseID: release.map { try! ReleaseID(validating: $0) })
        }
    }

    func open(_ api: APIServer, _ path: String, _ scope: TokenScope? = .read, lastEventID: String? = nil) async throws -> SSETestClient {
        try await SSETestClient.open(api.client.client, port: api.port, path: path, token: scope.map { api.tokens[$0]! }, lastEventID: lastEventID)
    }

    @Test func theLogThenLiveEventsThenResumeAfterLastEventID() async throws {
        // The store re-check is put out of reach, so live events can only come by the wake-up.
        try await APIServer.with(eventsRecheck: .seconds(3600)) { api in
            try await api.store.commit(StoreBatch(events: Self.events(150)))
            let first = try await open(api, "/v1/events/stream")
            #expect(first.status == 200, "\(first.errorBody)")
            try await eventually(timeout: .seconds(30), "the backlog (more than one page)") { first.seqs.count == 150 }
            #expect(first.seqs == Array(1...150))
            #expect(first.events.first?.event == "device.online")
            #expect(first.events.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.data.utf8)) as? [String: Any] }?["seq"] as? Int == 1)
            // Live: committed and announced, delivered by the wake-up (the re-check is an hour away).
            try await api.store.commit(StoreBatch(events: Self.events(5, from: 150)))
            api.signal.notify()
            try await eventually(timeout: .seconds(30), "the live events") { first.seqs.count == 155 }
            await first.close()
            // A reconnect with the last id it had gets exactly what followed.
            try await api.store.commit(StoreBatch(events: Self.events(3, from: 155)))
            let again = try await open(api, "/v1/events/stream?after=0", lastEventID: "152")
            try await eventually(timeout: .seconds(30), "the rest") { again.seqs.count == 6 }
            #expect(again.seqs == Array(153...158))
            await again.close()
            let fromAfter = try await open(api, "/v1/events/stream?after=157")
            try await eventually(timeout: .seconds(30), "after 157") { fromAfter.seqs == [158] }
            await fromAfter.close()
        }
    }

    @Test func filtersByKindReleaseAndDevice() async throws {
        try await APIServer.with { api in
            try await api.store.commit(StoreBatch(events: Self.events(12) + Self.events(6, from: 12, release: "r-1")))
            let all = try await api.store.events(after: 0, limit: 100)
            let cases: [(String, (UpdraftEvent) -> Bool)] = [
                ("kinds=device.online", { $0.kind == .deviceOnline }),
                ("kinds=device.online,job.transition", { _ in true }),
                ("release=r-1", { $0.releaseID == "r-1" }),
                ("device=d-1", { $0.deviceID == "d-1" }),
                ("kinds=job.transition&release=r-1&device=d-2", { $0.kind == .jobTransition && $0.releaseID == "r-1" && $0.deviceID == "d-2" }),
            ]
            for (query, wanted) in cases {
                let expected = all.filter(wanted).map(\.sequence)
                let stream = try await open(api, "/v1/events/stream?\(query)")
                try await eventually(timeout: .seconds(30), "\(query)") { stream.seqs.count >= expected.count }
                try await Task.sleep(for: .milliseconds(200))
                #expect(stream.seqs == expected, "\(query)")
                #expect(stream.events.allSatisfy { e in all.first { $0.sequence == e.seq }.map(wanted) == true }, "\(query)")
                await stream.close()
            }
        }
    }

    @Test func aQuietStreamGetsKeepAliveComments() async throws {
        try await APIServer.with(tune: { $0.sseKeepAlive = .seconds(1) }) { api in
            let stream = try await open(api, "/v1/events/stream")
            try await eventually(timeout: .seconds(30), "two keep-alives") { stream.comments.filter { $0 == "keep-alive" }.count >= 2 }
            #expect(stream.events.isEmpty)
            await stream.close()
        }
    }

    /// Graceful shutdown ends the streams (their clients resume on the next start) within
    /// the shutdown, instead of holding it for `shutdown_timeout`.
    @Test func gracefulShutdownEndsTheStreams() async throws {
        // A client of its own: the server's shutdown, not the test client's, must end it.
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        var stream: SSETestClient?
        var stopping = ContinuousClock.now
        // Without the streams ending, shutdown would wait the whole 100 s.
        try await APIServer.with(tune: { $0.shutdownTimeout = .seconds(100) }) { api in
            let opened = try await SSETestClient.open(client, port: api.port, path: "/v1/events/stream", token: api.tokens[.read]!)
            stream = opened
            try await eventually(timeout: .seconds(30), "the greeting") { opened.comments.contains { $0.hasPrefix("updraft events") } }
            #expect(!opened.ended)
            stopping = .now
        }
        #expect(ContinuousClock.now - stopping < .seconds(50), "shutdown waited for the stream")
        let ended = try #require(stream)
        try await eventually(timeout: .seconds(5), "the stream ended by the server") { ended.ended }
        await ended.close()
        try? await client.shutdown()
    }

    @Test func hostileInput() async throws {
        try await APIServer.with { api in
            let problems: [(String, String?, TokenScope?, Int, String)] = [
                ("/v1/events/stream", nil, nil, 401, "unauthorized"),
                ("/v1/events/stream", "abc", .read, 400, "invalid_last_event_id"),
                ("/v1/events/stream", "-4", .read, 400, "invalid_last_event_id"),
                ("/v1/events/stream", "99999999999999999999999", .read, 400, "invalid_last_event_id"),
                ("/v1/events/stream?after=-1", nil, .read, 400, "invalid_after"),
                ("/v1/events/stream?after=x", nil, .read, 400, "bad_request"),
                ("/v1/events/stream?kinds=job.transition,nope", nil, .read, 400, "invalid_kinds"),
                ("/v1/events/stream?kinds=,", nil, .read, 400, "invalid_kinds"),
                ("/v1/events/stream?device=a%2Fb", nil, .read, 400, "*"),
            ]
            for (path, lastEventID, scope, status, code) in problems {
                let stream = try await open(api, path, scope, lastEventID: lastEventID)
                #expect(stream.status == status, "\(path) \(lastEventID ?? "-"): \(stream.status) \(stream.errorBody)")
                let problem = (try? JSONSerialization.jsonObject(with: Data(stream.errorBody.utf8))) as? [String: Any]
                #expect(code == "*" || problem?["code"] as? String == code, "\(path) \(lastEventID ?? "-"): \(stream.errorBody)")
            }
            // A revoked token streams nothing.
            let revoked = try await SSETestClient.open(api.client.client, port: api.port, path: "/v1/events/stream", token: api.revoked)
            #expect(revoked.status == 401)
        }
    }
}
