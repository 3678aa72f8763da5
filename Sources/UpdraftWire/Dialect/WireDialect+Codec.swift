import Foundation
import UpdraftCore

// The JSON codec every dialect gets unless it brings its own: the one place that knows
// the device protocol's byte formats (see the DocC article "MQTT device protocol").
extension WireDialect {
    public func decode(topic: String, payload: [UInt8]) -> Result<(DeviceID, DeviceMessage), WireDecodeError> {
        guard let parsed = parse(topic), parsed.rest.isEmpty else {
            return .failure(WireDecodeError(device: nil, error: UpdraftError("unknown_topic", "Topic '\(topic.prefix(120))' is not part of the device protocol.")))
        }
        let (id, kind) = (parsed.device, parsed.kind)
        guard payload.count <= maxControlBytes else {
            return .failure(WireDecodeError(device: id, error: UpdraftError("payload_too_large", "A \(kind.rawValue) message may hold at most \(maxControlBytes) bytes; this one has \(payload.count).")))
        }
        do {
            return .success((id, try WireBodies.decode(kind, payload)))
        } catch {
            return .failure(WireDecodeError(device: id, error: error))
        }
    }

    public func encode<T: Encodable>(_ value: T) -> [UInt8] { WireJSON.encode(value) }

    public func decodeOffer(_ payload: [UInt8]) throws(UpdraftError) -> JobOffer {
        try WireJSON.decode(payload, "offer", example: "a job offer")
    }

    public func decodeError(_ payload: [UInt8]) throws(UpdraftError) -> ErrorReply {
        try WireJSON.decode(payload, "error", example: #"{"code":"…","message":"…"}"#)
    }
}

/// The bodies of what devices send, by topic kind.
enum WireBodies {
    static func decode(_ kind: WireTopicKind, _ payload: [UInt8]) throws(UpdraftError) -> DeviceMessage {
        switch kind {
        case .presence:
            switch String(decoding: payload, as: UTF8.self) {
            case "online": return .presence(online: true)
            case "offline": return .presence(online: false)
            default: throw UpdraftError("malformed_presence", "Presence must be 'online' or 'offline'.")
            }
        case .announce:
            let body: AnnounceBody = try WireJSON.decode(payload, "announce", example: #"{"product":"thermo","version":"1.0.0","accepts_updates":true}"#)
            return .announce(body.announcement)
        case .download:
            let request: DownloadRequest = try WireJSON.decode(payload, "download", example: #"{"job":"j0123456789abcdef","offset":0,"count":16,"size":4096}"#)
            return .download(request)
        case .progress:
            let body: ProgressBody = try WireJSON.decode(payload, "progress", example: #"{"job":"j0123456789abcdef","state":"downloading","percent":40}"#)
            return .progress(body.job, try body.report())
        case .query:
            return .pendingQuery
        case .job, .chunk, .error, .pending:
            throw UpdraftError("wrong_direction", "Devices do not publish on '\(kind.rawValue)' topics; the gateway does.")
        }
    }
}
