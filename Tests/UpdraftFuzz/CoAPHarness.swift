import CCoAP
import CoAP
import UpdraftCore
import UpdraftWire

/// Input: 2 bytes that pick the room in the session's PDU, 4 that pick the size of the
/// body a GET answers, then one CoAP datagram as a device sends it. libcoap splits the
/// datagram into a PDU (as the server does before calling a handler); the harness runs
/// what Updraft reads from it: the options in one pass (`PDU.requestOptions`), the body,
/// the `?d=` claim and its device id, the announce and progress bodies as the gateway
/// decodes them, and the Block2 window the server would answer with (`BlockWindow`).
enum CoAPHarness {
    private static let started: Bool = {
        coap_startup()
        #if UPDRAFT_FUZZ
        // Quiet in a fuzz run (millions of malformed datagrams). Not when `swift test`
        // replays the corpus: the level is process-wide, and the CoAP tests in the same
        // process wait for libcoap's notices (CoAPLoggingTests failed in CI over it).
        coap_set_log_level(CCOAP_LOG_EMERG)
        #endif
        return true
    }()

    static func run(_ input: [UInt8]) throws(FuzzFailure) {
        guard started, input.count >= 6 else { return }
        let room = 16 + Int(UInt16(input[0]) << 8 | UInt16(input[1])) % 1500
        let bodySize = 1 + Int(input[2..<6].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } % (64 << 20))
        let datagram = Array(input[6...])
        guard let pdu = coap_pdu_init(COAP_MESSAGE_CON, coap_pdu_code_t(rawValue: 0), 0, max(datagram.count, 16)) else { return }
        defer { coap_delete_pdu(pdu) }
        let parsed = datagram.withUnsafeBufferPointer { coap_pdu_parse(COAP_PROTO_UDP, $0.baseAddress, $0.count, pdu) }
        guard parsed != 0 else { return }
        let options = PDU.requestOptions(pdu)
        let payload = PDU.payload(pdu)
        try expect(payload.count < datagram.count && (payload.isEmpty || datagram.suffix(payload.count).elementsEqual(payload)), "payload is not the datagram's tail")
        let request = CoAPRequest(
            method: CoAPMethod(rawValue: PDU.code(pdu)) ?? .get, path: "announce", query: options.query, payload: payload,
            contentFormat: options.contentFormat, accept: options.accept, remoteAddress: CoAPAddress(host: "127.0.0.1", port: 5683))
        try claim(request)
        try bodies(payload)
        try block(options.block2, bodySize: bodySize, room: room)
    }

    /// `?d=<id>`: the first `d` item's value, and a device id only when it is a valid one.
    static func claim(_ request: CoAPRequest) throws(FuzzFailure) {
        guard let claimed = request.queryValue("d") else {
            try expect(!request.query.contains { $0 == "d" || $0.hasPrefix("d=") }, "query \(request.query) has a d the gateway misses")
            return
        }
        try expect(request.query.contains("d") || request.query.contains("d=" + claimed), "claim '\(claimed)' is not in \(request.query)")
        if let id = DeviceID(rawValue: claimed) { try expect(id.rawValue == claimed, "device id \(id) from '\(claimed)'") }
    }

    /// The bodies of `POST announce` and `POST progress`, decoded as the gateway does;
    /// what decodes, decodes the same once encoded again.
    static func bodies(_ payload: [UInt8]) throws(FuzzFailure) {
        let announce = Result { () throws(UpdraftError) -> (AnnounceBody, AnnounceBody) in
            let body: AnnounceBody = try WireJSON.decode(payload, "announce", example: "{}")
            return (body, try WireJSON.decode(WireJSON.encode(body), "announce", example: "{}"))
        }
        switch announce {
        case .success(let (body, again)):
            try expect(again.announcement == body.announcement && again.lifetime == body.lifetime, "announce does not round-trip")
        case .failure(let error):
            try expectCode(error.code, in: ["malformed_announce"], error.message)
        }
        let progress = Result { () throws(UpdraftError) -> (ProgressBody, DeviceReport, ProgressBody) in
            let body: ProgressBody = try WireJSON.decode(payload, "progress", example: "{}")
            let report = try body.report()
            return (body, report, try WireJSON.decode(WireJSON.encode(ProgressBody(job: body.job, report: report)), "progress", example: "{}"))
        }
        switch progress {
        case .success(let (body, report, again)):
            try expect(again.job == body.job && (try? again.report()) == report, "progress \(report) does not round-trip")
        case .failure(let error):
            try expectCode(error.code, in: ["malformed_progress"], error.message)
        }
    }

    /// The block answered is the one asked for (or its start at a smaller size), inside the
    /// body, no larger than the PDU's room, with a number the 3-byte option can carry.
    static func block(_ block2: (num: UInt32, szx: UInt32)?, bodySize: Int, room: Int) throws(FuzzFailure) {
        if BlockWindow.refusal(block2, bodySize: bodySize) != nil {
            try expect(block2 != nil, "refused a request without Block2")
            return
        }
        switch BlockWindow.select(block2, bodySize: bodySize, room: room) {
        case .whole:
            try expect(block2 == nil && bodySize <= room, "whole body of \(bodySize) bytes in room \(room), asked \(String(describing: block2))")
        case .block(let num, let szx, let range, let more):
            let size = 16 << Int(szx)
            try expect(szx <= 6 && (size <= room || szx == 0), "block size \(size) for room \(room)")
            try expect(!range.isEmpty && range.upperBound <= bodySize && range.count <= size, "range \(range) of \(bodySize) bytes")
            try expect(range.lowerBound == Int(num) * size && more == (range.upperBound < bodySize), "block \(num)/\(szx) is \(range), more \(more)")
            try expect(num <= 0xF_FFFF, "block number \(num) does not fit the Block2 option (20 bits)")
            if let asked = block2 {
                try expect(szx <= asked.szx && range.lowerBound == Int(asked.num) << (asked.szx + 4), "asked \(asked), answered \(num)/\(szx)")
            } else {
                try expect(num == 0, "block \(num) without Block2")
            }
        }
    }
}
