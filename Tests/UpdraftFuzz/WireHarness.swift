import Foundation
import UpdraftCore
import UpdraftWire

/// Input: an MQTT topic, a 0 byte, the payload. Runs through three dialects what the
/// gateway runs for every message a device publishes, and the gateway's bodies as a
/// device decodes them.
enum WireHarness {
    static let dialects: [any WireDialect] = [
        UpdraftDialectV1(),
        UpdraftDialectV1(prefix: "fleet/eu", maxControlBytes: 512),
        LayoutDialect(
            layout: DeviceTopicLayout(head: "things/", middle: "/updraft/"), eventsTopic: "updraft/events",
            gatewayTopicFilters: ["things/+/updraft/#", "updraft/events"]),
    ]

    static let decodeCodes: Set<String> = [
        "unknown_topic", "payload_too_large", "wrong_direction", "malformed_presence", "malformed_announce",
        "malformed_download", "malformed_progress",
    ]

    static func run(_ input: [UInt8]) throws(FuzzFailure) {
        let (topic, payload) = split(input)
        for dialect in dialects {
            try topicRoundTrip(dialect, topic)
            try decode(dialect, topic, payload)
        }
        try gatewayBodies(UpdraftDialectV1(), payload)
    }

    /// A topic the dialect parses is the topic it writes for that device and kind.
    static func topicRoundTrip(_ dialect: any WireDialect, _ topic: String) throws(FuzzFailure) {
        guard let parsed = dialect.parse(topic) else { return }
        try expect(DeviceID(rawValue: parsed.device.rawValue) == parsed.device, "parsed device id '\(parsed.device)' is not valid")
        let written = dialect.topic(parsed.kind, of: parsed.device) + parsed.rest.map { "/" + $0 }.joined()
        try expect(written == topic, "topic '\(topic)' parsed as \(parsed) writes back as '\(written)'")
        let again = dialect.parse(dialect.topic(parsed.kind, of: parsed.device))
        try expect(again == WireTopic(device: parsed.device, kind: parsed.kind), "written topic parses as \(String(describing: again))")
    }

    /// What the gateway decodes; a message decodes the same after encoding it again.
    static func decode(_ dialect: any WireDialect, _ topic: String, _ payload: [UInt8]) throws(FuzzFailure) {
        switch dialect.decode(topic: topic, payload: payload) {
        case .failure(let failure):
            try expectCode(failure.error.code, in: decodeCodes, "decode")
            let parsed = dialect.parse(topic)
            try expect((failure.device == nil) == (failure.error.code == "unknown_topic"), "device \(String(describing: failure.device)) with \(failure.error.code)")
            if let device = failure.device { try expect(parsed?.device == device, "error names device \(device), topic has \(String(describing: parsed))") }
        case .success(let (device, message)):
            guard let parsed = dialect.parse(topic) else { throw FuzzFailure("decoded a message on unparsable topic '\(topic)'") }
            try expect(parsed.device == device && parsed.rest.isEmpty && parsed.kind.fromDevice, "decoded \(message) from \(parsed)")
            try expect(payload.count <= dialect.maxControlBytes, "decoded \(payload.count) bytes over the limit")
            try expect(kind(of: message) == parsed.kind, "\(message) decoded from a \(parsed.kind) topic")
            let again = encode(message, dialect)
            guard again.count <= dialect.maxControlBytes else { return }
            let redecoded = dialect.decode(topic: topic, payload: again)
            guard case .success(let (device2, message2)) = redecoded, device2 == device, message2 == message else {
                throw FuzzFailure("\(message) re-encoded as \(String(decoding: again, as: UTF8.self)) decodes as \(redecoded)")
            }
            if case .download(let request) = message { try chunkRanges(request) }
        }
    }

    static func kind(of message: DeviceMessage) -> WireTopicKind {
        switch message {
        case .announce: .announce
        case .presence: .presence
        case .download: .download
        case .progress: .progress
        case .pendingQuery: .query
        }
    }

    static func encode(_ message: DeviceMessage, _ dialect: any WireDialect) -> [UInt8] {
        switch message {
        case .announce(let a):
            dialect.encode(AnnounceBody(product: a.product, version: a.version, acceptsUpdates: a.acceptsUpdates, boot: a.boot))
        case .presence(let online): Array((online ? "online" : "offline").utf8)
        case .download(let request): dialect.encode(request)
        case .progress(let job, let report): dialect.encode(ProgressBody(job: job, report: report))
        case .pendingQuery: []
        }
    }

    /// The byte ranges the gateway sends for a download request: inside the image,
    /// contiguous from the offset asked for, each at most one chunk.
    static func chunkRanges(_ request: DownloadRequest) throws(FuzzFailure) {
        let limits = ChunkLimits()
        for imageSize in [1, 4096, 1_000_003] {
            let ranges: [Range<Int>]
            do throws(UpdraftError) {
                ranges = try request.chunkRanges(imageSize: imageSize, limits: limits)
            } catch {
                try expectCode(error.code, in: ["chunk_size_out_of_bounds", "chunk_count_out_of_bounds", "offset_out_of_range"], "chunkRanges")
                continue
            }
            try expect(!ranges.isEmpty && ranges.count <= request.count, "\(ranges.count) ranges for \(request)")
            try expect(ranges[0].lowerBound == request.offset && ranges.last!.upperBound <= imageSize, "ranges \(ranges) for \(request)")
            for (a, b) in zip(ranges, ranges.dropFirst()) { try expect(a.upperBound == b.lowerBound, "gap in \(ranges)") }
            try expect(ranges.allSatisfy { !$0.isEmpty && $0.count <= request.size }, "range sizes \(ranges) for \(request)")
        }
    }

    /// What a device decodes from the gateway: offers, error replies, pending answers.
    static func gatewayBodies(_ dialect: UpdraftDialectV1, _ payload: [UInt8]) throws(FuzzFailure) {
        try roundTrip(payload, "malformed_offer", dialect, dialect.decodeOffer)
        try roundTrip(payload, "malformed_error", dialect, dialect.decodeError)
        try roundTrip(payload, "malformed_pending", dialect) { (bytes) throws(UpdraftError) -> PendingBody in
            try WireJSON.decode(bytes, "pending", example: #"{"pending":false}"#)
        }
    }

    /// Decodes with `decode`; what decodes, decodes the same once encoded again.
    static func roundTrip<Body: Encodable & Equatable>(
        _ payload: [UInt8], _ code: String, _ dialect: UpdraftDialectV1, _ decode: ([UInt8]) throws(UpdraftError) -> Body
    ) throws(FuzzFailure) {
        let body: Body
        do throws(UpdraftError) {
            body = try decode(payload)
        } catch {
            try expectCode(error.code, in: [code], error.message)
            return
        }
        let again = try? decode(dialect.encode(body))
        try expect(again == body, "\(body) re-encoded decodes as \(String(describing: again))")
    }
}
