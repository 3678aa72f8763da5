import Foundation
import OpenAPIRuntime
import UpdraftCore
import UpdraftHTTP

extension RemoteFleet {
    public func events(after: Int64, limit: Int) async throws -> [EventLine] {
        let page = try await call { try await client.listEvents(query: .init(after: after, limit: limit)).ok.body.json.events }
        return try page.map { EventLine(sequence: $0.seq, json: try Self.jsonLine($0)) }
    }

    /// The event as `UpdraftEvent.jsonLine()` writes it (same fields, sorted keys, dates in seconds).
    static func jsonLine(_ event: Components.Schemas.Event) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(event), as: UTF8.self)
    }

    /// `GET /v1/events/stream` (Server-Sent Events). When the stream breaks (the gateway
    /// restarts, the network drops) it reconnects with `Last-Event-ID` = the last sequence
    /// printed, so nothing is missed and nothing is printed twice. A gateway that cannot be
    /// reached at the first connection is an error; later, it is waited for.
    public func followEvents(after: Int64, _ body: @Sendable (EventLine) async throws -> Void) async throws {
        var last = after
        var connected = false
        var delay = Duration.milliseconds(200)
        while true {
            do {
                try await stream(after: last) { line in
                    connected = true
                    delay = .milliseconds(200)
                    guard line.sequence > last else { return }
                    try await body(line)
                    last = line.sequence
                }
            } catch let error as UpdraftError where connected && ["server_unreachable", "server_answer"].contains(error.code) {
                // The stream broke after it had worked: the gateway restarts; wait for it.
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
    }

    /// One connection of the stream, until it ends or fails.
    private func stream(after: Int64, _ each: (EventLine) async throws -> Void) async throws {
        let response = try await call {
            try await longClient.streamEvents(query: .init(after: after), headers: .init(lastEventID: after > 0 ? String(after) : nil))
        }
        let body = try call { try response.ok.body.textEventStream }
        do {
            for try await event in body.asDecodedServerSentEvents() {
                guard let id = event.id.flatMap({ Int64($0) }), let data = event.data else { continue }
                try await each(EventLine(sequence: id, json: data))
            }
        } catch let error as CancellationError {
            throw error
        } catch {
            throw remoteError(error, server: server.absoluteString)
        }
    }
}

extension RemoteFleet {
    func call<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw remoteError(error, server: server.absoluteString) }
    }
}
