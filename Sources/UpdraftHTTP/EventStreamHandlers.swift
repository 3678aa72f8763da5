import Foundation
import OpenAPIRuntime
import UpdraftCore

/// `GET /v1/events/stream`: the event log as Server-Sent Events (``EventStream``).
extension APIHandlers {
    func streamEvents(_ input: Operations.StreamEvents.Input) async throws -> Operations.StreamEvents.Output {
        let after = try Self.streamStart(lastEventID: input.headers.lastEventID, after: input.query.after)
        let filter = EventFilter(
            kinds: try EventFilter.kinds(input.query.kinds), release: try input.query.release.map { try ReleaseID(validating: $0) },
            device: try input.query.device.map { try DeviceID(validating: $0) })
        var stream = EventStream(
            store: backend.store, signal: backend.eventSignal, filter: filter, after: after, keepAlive: backend.eventsKeepAlive)
        stream.recheck = backend.eventsRecheck
        return .ok(.init(headers: .init(cacheControl: "no-cache"), body: .textEventStream(HTTPBody(stream, length: .unknown, iterationBehavior: .single))))
    }

    /// Where a stream starts: after `Last-Event-ID` when the client sends it (a reconnecting
    /// EventSource sends it with the URL it first opened, whose `after` is older), else
    /// after `after`, else after 0 (the whole log).
    static func streamStart(lastEventID: String?, after: Int64?) throws(UpdraftError) -> Int64 {
        if let lastEventID {
            let text = lastEventID.trimmingCharacters(in: .whitespaces)
            guard let seq = Int64(text), seq >= 0 else {
                throw UpdraftError(
                    "invalid_last_event_id", "Last-Event-ID must be the sequence number (the `id:`) of an event, not '\(text.prefix(40))'.")
            }
            return seq
        }
        let after = after ?? 0
        guard after >= 0 else { throw UpdraftError("invalid_after", "after must be 0 or a sequence number, not \(after).") }
        return after
    }
}
