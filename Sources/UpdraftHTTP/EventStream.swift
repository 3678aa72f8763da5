import Foundation
import UpdraftCore

/// Which events a stream (or a webhook) wants: all when a part is empty or `nil`.
struct EventFilter: Sendable, Equatable {
    static func kinds(_ text: String?) throws(UpdraftError) -> Set<EventKind> { try EventKind.list(text) }

    var kinds: Set<EventKind> = []
    var release: ReleaseID?
    var device: DeviceID?

    func matches(_ event: UpdraftEvent) -> Bool {
        (kinds.isEmpty || kinds.contains(event.kind)) && (release == nil || event.releaseID == release)
            && (device == nil || event.deviceID == device)
    }
}

/// The Server-Sent Events of `GET /v1/events/stream`, read from the event log page by page:
/// an event is `id: <seq>`, `event: <kind>`, `data: <the JSON of the MQTT topic>`. The
/// stream holds one page at a time (pulled by the server only as the client reads), so a
/// slow subscriber costs the gateway one page and a socket buffer, never a backlog. When
/// the log has nothing new it waits for the ``EventSignal`` (or `recheck`), and writes a
/// `: keep-alive` comment when nothing was written for `keepAlive`.
struct EventStream: AsyncSequence, Sendable {
    typealias Element = ArraySlice<UInt8>

    let store: any StatusStore
    let signal: EventSignal
    let filter: EventFilter
    let after: Int64
    let keepAlive: Duration
    var pageSize = 100
    /// Re-reads the store this often even without a signal (commits nobody announced).
    var recheck: Duration = .seconds(1)

    func makeAsyncIterator() -> Iterator { Iterator(stream: self, cursor: after) }

    struct Iterator: AsyncIteratorProtocol {
        let stream: EventStream
        var cursor: Int64
        var greeted = false
        var lastWrite = ContinuousClock.now

        mutating func next() async throws -> ArraySlice<UInt8>? {
            if !greeted {
                greeted = true
                // At once, so the client sees the response start; `retry` is how long a
                // browser EventSource waits before it reconnects.
                return ArraySlice("retry: 2000\n: updraft events after \(cursor)\n\n".utf8)
            }
            while !Task.isCancelled, !stream.signal.isClosed {
                let generation = stream.signal.generation
                let page = try await stream.store.events(after: cursor, limit: stream.pageSize)
                if let last = page.last { cursor = last.sequence }
                let matching = page.filter(stream.filter.matches)
                if !matching.isEmpty {
                    lastWrite = .now
                    return ArraySlice(matching.map(Self.encode).joined().utf8)
                }
                if page.count == stream.pageSize { continue }
                let quiet = ContinuousClock.now - lastWrite
                if quiet >= stream.keepAlive {
                    lastWrite = .now
                    return ArraySlice(": keep-alive\n\n".utf8)
                }
                await stream.signal.wait(after: generation, timeout: Swift.min(stream.keepAlive - quiet, stream.recheck))
            }
            return nil
        }

        /// One event as SSE. The JSON is one line (no newline to split into `data:` lines).
        static func encode(_ event: UpdraftEvent) -> String {
            "id: \(event.sequence)\nevent: \(event.kind.rawValue)\ndata: \(event.jsonLine())\n\n"
        }
    }
}
