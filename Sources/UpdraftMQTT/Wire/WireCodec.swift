import Foundation
import UpdraftCore

/// Decodes what devices send and encodes what the gateway sends: the one place that
/// knows the device protocol's byte formats (see the DocC article "MQTT device protocol").
public struct WireCodec: Sendable {
    public let topics: Topics
    /// Control messages (everything but chunks) larger than this are refused.
    public let maxControlBytes: Int

    public init(topics: Topics = Topics(), maxControlBytes: Int = 4096) {
        self.topics = topics
        self.maxControlBytes = maxControlBytes
    }

    /// A device message that could not be decoded; `device` is known when the topic was valid.
    public struct DecodeError: Error, Sendable, Equatable {
        public var device: DeviceID?
        public var error: UpdraftError
    }

    public func decode(topic: String, payload: [UInt8]) -> Result<(DeviceID, DeviceMessage), DecodeError> {
        guard let (id, kind, rest) = topics.parse(topic), rest.isEmpty else {
            return .failure(DecodeError(device: nil, error: UpdraftError("unknown_topic", "Topic '\(topic.prefix(120))' is not part of the device protocol.")))
        }
        guard payload.count <= maxControlBytes else {
            return .failure(DecodeError(device: id, error: UpdraftError("payload_too_large", "A \(kind.rawValue) message may hold at most \(maxControlBytes) bytes; this one has \(payload.count).")))
        }
        do {
            return .success((id, try decode(kind, payload)))
        } catch {
            return .failure(DecodeError(device: id, error: error))
        }
    }

    private func decode(_ kind: Topics.Kind, _ payload: [UInt8]) throws(UpdraftError) -> DeviceMessage {
        switch kind {
        case .presence:
            switch String(decoding: payload, as: UTF8.self) {
            case "online": return .presence(online: true)
            case "offline": return .presence(online: false)
            default: throw UpdraftError("malformed_presence", "Presence must be 'online' or 'offline'.")
            }
        case .announce:
            let body: AnnounceBody = try json(payload, "announce", example: #"{"product":"thermo","version":"1.0.0","accepts_updates":true}"#)
            return .announce(Announcement(product: body.product, version: body.version, acceptsUpdates: body.acceptsUpdates ?? true))
        case .download:
            let request: DownloadRequest = try json(payload, "download", example: #"{"job":"j0123456789abcdef","offset":0,"count":16,"size":4096}"#)
            return .download(request)
        case .progress:
            let body: ProgressBody = try json(payload, "progress", example: #"{"job":"j0123456789abcdef","state":"downloading","percent":40}"#)
            return .progress(body.job, try report(from: body))
        case .job, .chunk, .error:
            throw UpdraftError("wrong_direction", "Devices do not publish on '\(kind.rawValue)' topics; the gateway does.")
        }
    }

    private func report(from body: ProgressBody) throws(UpdraftError) -> DeviceReport {
        switch body.state {
        case "downloading":
            guard let percent = body.percent, (0...100).contains(percent) else {
                throw UpdraftError("malformed_progress", "A downloading report needs \"percent\" between 0 and 100.")
            }
            return .downloading(percent: percent)
        case "downloaded": return .downloaded
        case "verified": return .verified
        case "installing": return .installing
        case "installed": return .installed
        case "failed":
            guard let raw = body.reason, let reason = FailureReason(rawValue: raw), reason != .timeout else {
                throw UpdraftError("malformed_progress", "A failed report needs \"reason\": one of download, verify, install, rejected.")
            }
            return .failed(reason, detail: body.detail.map { String($0.prefix(500)) })
        default:
            throw UpdraftError("malformed_progress", "Unknown state '\(body.state.prefix(40))': use downloading, downloaded, verified, installing, installed or failed.")
        }
    }

    private func json<T: Decodable>(_ payload: [UInt8], _ what: String, example: String) throws(UpdraftError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(payload))
        } catch {
            throw UpdraftError("malformed_\(what)", "The \(what) message is not valid: \(Self.describe(error)). Expected JSON like \(example).")
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "wrong type at \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\""
        case DecodingError.dataCorrupted(let context):
            context.codingPath.isEmpty
                ? "not JSON" : "bad value at \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\": \(context.debugDescription)"
        default: "\(error)"
        }
    }

    // MARK: Encoding

    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(value)) ?? Data())
    }

    public func decodeOffer(_ payload: [UInt8]) throws(UpdraftError) -> JobOffer {
        try json(payload, "offer", example: "a job offer")
    }

    public func decodeError(_ payload: [UInt8]) throws(UpdraftError) -> ErrorReply {
        try json(payload, "error", example: #"{"code":"…","message":"…"}"#)
    }
}

extension DownloadRequest {
    /// Checks the request against the limits and the image size; returns the byte range of each chunk.
    public func chunkRanges(imageSize: Int, limits: ChunkLimits) throws(UpdraftError) -> [Range<Int>] {
        guard (limits.min...limits.max).contains(size) else {
            throw UpdraftError("chunk_size_out_of_bounds", "Chunk size \(size) is outside \(limits.min)...\(limits.max) bytes; pick one in range (preferred \(limits.preferred)).")
        }
        guard (1...limits.maxCount).contains(count) else {
            throw UpdraftError("chunk_count_out_of_bounds", "Ask for 1...\(limits.maxCount) chunks per request, not \(count).")
        }
        guard offset >= 0, offset < imageSize else {
            throw UpdraftError("offset_out_of_range", "Offset \(offset) is outside the image (0..<\(imageSize)); the download is complete at \(imageSize) bytes.")
        }
        var ranges: [Range<Int>] = []
        var start = offset
        while ranges.count < count, start < imageSize {
            let end = Swift.min(start + size, imageSize)
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }
}
