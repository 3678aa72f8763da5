import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization

/// One Server-Sent Event as a client parsed it.
package struct SSEEvent: Sendable, Equatable {
    package var id: String?
    package var event: String?
    package var data: String

    package var seq: Int64? { id.flatMap { Int64($0) } }
}

/// A subscriber of an SSE endpoint over a real HTTP client: parses the stream as it comes
/// (`id:`, `event:`, `data:`, comments) until the server ends it or ``close()``.
package final class SSETestClient: Sendable {
    package let status: Int
    /// The body when the server did not answer 200 (a problem+json).
    package let errorBody: String
    private struct State {
        var events: [SSEEvent] = []
        var comments: [String] = []
        var ended = false
        /// When each event arrived (same index as `events`).
        var arrivals: [ContinuousClock.Instant] = []
    }
    private let state = Mutex(State())
    private let reader = Mutex<Task<Void, Never>?>(nil)

    private init(status: Int, errorBody: String) {
        (self.status, self.errorBody) = (status, errorBody)
    }

    /// `GET path` on 127.0.0.1:`port` with a bearer token and `Last-Event-ID` when given.
    package static func open(
        _ client: HTTPClient, port: Int, path: String, token: String?, lastEventID: String? = nil
    ) async throws -> SSETestClient {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let lastEventID { request.headers.add(name: "Last-Event-ID", value: lastEventID) }
        request.headers.add(name: "Accept", value: "text/event-stream")
        let response = try await client.execute(request, timeout: .hours(1))
        guard response.status.code == 200 else {
            let body = try await response.body.collect(upTo: 1 << 20)
            return SSETestClient(status: Int(response.status.code), errorBody: String(buffer: body))
        }
        let sse = SSETestClient(status: 200, errorBody: "")
        let body = response.body
        sse.reader.withLock {
            $0 = Task {
                var parser = SSEParser()
                do {
                    for try await buffer in body {
                        let (events, comments) = parser.feed(Array(buffer: buffer))
                        let now = ContinuousClock.now
                        sse.state.withLock {
                            $0.events += events
                            $0.arrivals += Array(repeating: now, count: events.count)
                            $0.comments += comments
                        }
                    }
                } catch {}
                sse.state.withLock { $0.ended = true }
            }
        }
        return sse
    }

    package var events: [SSEEvent] { state.withLock { $0.events } }
    package var comments: [String] { state.withLock { $0.comments } }
    package var arrivals: [ContinuousClock.Instant] { state.withLock { $0.arrivals } }
    /// The server ended the stream (or the connection broke).
    package var ended: Bool { state.withLock { $0.ended } }
    package var seqs: [Int64] { events.compactMap(\.seq) }

    /// Stops reading and closes the connection.
    package func close() async {
        let task = reader.withLock { $0 }
        task?.cancel()
        await task?.value
    }
}

/// The SSE wire format, incrementally: lines end in LF (CR LF and CR accepted too), a
/// blank line dispatches, `:` starts a comment.
package struct SSEParser {
    private var pending: [UInt8] = []
    private var current = SSEEvent(id: nil, event: nil, data: "")
    private var hasData = false

    package init() {}

    package mutating func feed(_ bytes: [UInt8]) -> (events: [SSEEvent], comments: [String]) {
        pending += bytes
        var events: [SSEEvent] = []
        var comments: [String] = []
        while let end = pending.firstIndex(where: { $0 == 0x0A || $0 == 0x0D }) {
            var line = String(decoding: pending[..<end], as: UTF8.self)
            var next = end + 1
            if pending[end] == 0x0D, next < pending.count, pending[next] == 0x0A { next += 1 }
            pending.removeFirst(next)
            if line.isEmpty {
                if hasData { events.append(current) }
                current = SSEEvent(id: current.id, event: nil, data: "")
                hasData = false
                continue
            }
            if line.hasPrefix(":") {
                comments.append(String(line.dropFirst()).trimmingCharacters(in: .whitespaces))
                continue
            }
            let field: String
            if let colon = line.firstIndex(of: ":") {
                field = String(line[..<colon])
                line = String(line[line.index(after: colon)...])
                if line.hasPrefix(" ") { line.removeFirst() }
            } else {
                (field, line) = (line, "")
            }
            switch field {
            case "id": current.id = line
            case "event": current.event = line
            case "data":
                current.data += hasData ? "\n" + line : line
                hasData = true
            default: break
            }
        }
        return (events, comments)
    }
}
