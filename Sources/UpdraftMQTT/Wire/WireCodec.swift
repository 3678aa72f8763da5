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
            return .announce(body.announcement)
        case .download:
            let request: DownloadRequest = try json(payload, "download", example: #"{"job":"j0123456789abcdef","offset":0,"count":16,"size":4096}"#)
            return .download(request)
        case .progress:
            let body: ProgressBody = try json(payload, "progress", example: #"{"job":"j0123456789abcdef","state":"downloading","percent":40}"#)
            return .progress(body.job, try body.report())
        case .query:
            return .pendingQuery
        case .job, .chunk, .error, .pending:
            throw UpdraftError("wrong_direction", "Devices do not publish on '\(kind.rawValue)' topics; the gateway does.")
        }
    }

    private func json<T: Decodable>(_ payload: [UInt8], _ what: String, example: String) throws(UpdraftError) -> T {
        try WireJSON.decode(payload, what, example: example)
    }

    // MARK: Encoding

    public static func encode<T: Encodable>(_ value: T) -> [UInt8] { WireJSON.encode(value) }

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
