import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftHTTP

/// Slow and idle clients cannot hold the server: `http.idle_timeout` closes a connection
/// that sends no complete request part for that long (half a request, a header trickle,
/// a stalled body, an idle keep-alive), and `http.max_connections` bounds how many are
/// served at once (the rest wait, unaccepted, until one closes).
@Suite(.timeLimit(.minutes(2))) struct ConnectionLimitTests {
    static let healthz = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    /// /healthz's whole answer has arrived.
    static let answered: @Sendable ([UInt8]) -> Bool = { String(decoding: $0, as: UTF8.self).contains("\r\n\r\nok") }

    @Test func aClientThatStallsMidRequestIsClosedAfterTheIdleTimeout() async throws {
        try await APIServer.with(tune: { $0.idleTimeout = .seconds(1) }) { api in
            // Half a head, then nothing.
            let head = try RawConnection(port: api.port)
            head.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            // A whole head whose body stops at 10 of 100 bytes.
            let body = try RawConnection(port: api.port)
            body.send(
                "POST /v1/releases HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(api.tokens[.operate]!)\r\n"
                    + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"firmware")
            let start = ContinuousClock.now
            #expect(await head.closed(within: .seconds(10)), "a half head is closed")
            #expect(await body.closed(within: .seconds(10)), "a stalled body is closed")
            let waited = ContinuousClock.now - start
            #expect(waited >= .milliseconds(700) && waited < .seconds(6), "closed after the idle timeout, not before: \(waited)")
            // An idle keep-alive connection after a whole exchange is closed too.
            let idle = try RawConnection(port: api.port)
            idle.send(Self.healthz)
            let answer = await idle.read(timeout: .seconds(5))
            #expect(String(decoding: answer.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            #expect(answer.closed, "closed after answering and idling")
        }
    }

    /// Slowloris: one byte of headers every 200 ms never completes a request part, so the
    /// connection is cut after the idle timeout although bytes keep coming.
    @Test func aSlowlorisTrickleIsCut() async throws {
        try await APIServer.with(tune: { $0.idleTimeout = .seconds(1) }) { api in
            let trickle = try RawConnection(port: api.port)
            let request = Array("GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: \(String(repeating: "a", count: 200))\r\n".utf8)
            let start = ContinuousClock.now
            var cut = false
            for byte in request {
                guard trickle.send([byte]), await !trickle.read(timeout: .milliseconds(200)).closed else {
                    cut = true
                    break
                }
            }
            let elapsed = ContinuousClock.now - start
            #expect(cut, "the trickle went on for \(elapsed)")
            #expect(elapsed < .seconds(5), "cut after \(elapsed)")
            // The server answers others all along.
            #expect(try await api.get("/healthz").status == 200)
        }
    }

    /// `max_connections` 4: four held connections are served; the next ones are accepted by
    /// the kernel but not by the server (no answer) until the idle timeout frees slots;
    /// then they, and a fresh connection, are answered.
    @Test func connectionsBeyondTheLimitWaitUntilIdleOnesAreClosed() async throws {
        try await APIServer.with(tune: { $0.maxConnections = 4; $0.idleTimeout = .seconds(3) }) { api in
            let held = try (0..<4).map { _ in try RawConnection(port: api.port) }
            for connection in held {
                connection.send(Self.healthz)
                #expect(String(decoding: await connection.read(timeout: .seconds(5), until: Self.answered).bytes, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            }
            let extra = try (0..<2).map { _ in try RawConnection(port: api.port) }
            for connection in extra { connection.send(Self.healthz) }
            for connection in extra {
                let early = await connection.read(timeout: .milliseconds(500))
                #expect(early.bytes.isEmpty && !early.closed, "not served while four are held: \(String(decoding: early.bytes, as: UTF8.self))")
            }
            // The held ones go idle and are closed; the waiting ones are answered.
            for connection in held { #expect(await connection.closed(within: .seconds(6))) }
            for connection in extra {
                let answer = String(decoding: await connection.read(timeout: .seconds(5), until: Self.answered).bytes, as: UTF8.self)
                #expect(answer.hasPrefix("HTTP/1.1 200"), "answered once slots are free: \(answer.prefix(80))")
            }
            #expect(try await api.get("/healthz").status == 200)
        }
    }
}
