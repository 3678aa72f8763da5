import CoAP
import Foundation
import Logging
import LoopbackPorts
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport
import UpdraftWire

#if canImport(Glibc)
import Glibc
#endif

/// Issue 8 item 6: every Block2 request of a download is the gateway's decision, not an
/// answer from libcoap's copy of the image, and refusals are the documented codes.
@Suite(.timeLimit(.minutes(3))) struct CoAPBlockDecisionTests {
    func uri(_ h: Harness, _ path: String) -> String {
        "coap://127.0.0.1:\(h.stack.configuration.coap.port)/\(path)"
    }

    func announce(_ tool: CoAPClientTool, _ h: Harness, _ device: String, lifetime: Int? = nil) async throws {
        let extra = lifetime.map { #","lifetime":\#($0)"# } ?? ""
        _ = try await tool.run(
            ["-m", "post", "-t", "json", "-e", #"{"product":"thermo","version":"1.0"\#(extra)}"#],
            uri: uri(h, "announce?d=\(device)"))
    }

    /// Announces `devices`, releases an image to the first and returns its offer.
    func offer(_ h: Harness, _ tool: CoAPClientTool, _ devices: [String], size: Int = 20_000, lifetime: Int? = nil) async throws
        -> (JobOffer, [UInt8])
    {
        let (firmware, image) = try await h.addFirmware(version: "2.0", size: size)
        for device in devices { try await announce(tool, h, device, lifetime: lifetime) }
        try await h.waitUntilRegistered(devices.count)
        _ = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices([try DeviceID(validating: devices[0])]), allowDowngrade: false)
        var offer: JobOffer?
        try await eventually("the offer") {
            let got = try await tool.run([], uri: uri(h, "job/\(devices[0])?d=\(devices[0])"))
            offer = try? JSONDecoder().decode(JobOffer.self, from: Data(got.body))
            return offer != nil
        }
        return (try #require(offer), image)
    }

    /// A device that fetches one block per request over one session, as the reference device does.
    func blockClient(_ h: Harness) async throws -> (CoAPClient, CoAPClientSession) {
        let client = CoAPClient(configuration: .init(requestTimeout: .seconds(20), blockTransfers: .byCaller), logger: Logger(label: "test.device"))
        return (client, try await client.session(host: "127.0.0.1", port: h.stack.configuration.coap.port))
    }

    func block(_ session: CoAPClientSession, _ download: String, device: String, number: Int, size: Int = 64) async throws
        -> CoAPClientResponse
    {
        var request = CoAPClientRequest(method: .get, path: download, query: ["d=\(device)"], blockSize: size)
        request.blockNumber = number
        return try await session.request(request)
    }

    /// (a) Each block counts as hearing from the device: one that downloads block after
    /// block for longer than its lifetime stays online.
    @Test func aDeviceDownloadingPastItsLifetimeStaysOnline() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            // The short lifetime only from the download on: under load, fetching the offer
            // can itself take longer than 2 s, and that is not what this test is about.
            let (offer, image) = try await offer(h, tool, ["slow-1"])
            try await announce(tool, h, "slow-1", lifetime: 2)
            let download = try #require(offer.download)
            let (client, session) = try await blockClient(h)
            defer { client.shutdown() }
            var received: [UInt8] = []
            for number in 0..<10 {
                let got = try await block(session, download, device: "slow-1", number: number)
                #expect(got.code == .content, "block \(number): \(got.code)")
                received += got.payload
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(received == Array(image.prefix(640)))
            let events = try await h.ops.store.events(after: 0, limit: 10_000)
            #expect(!events.contains { $0.kind == .deviceOffline && $0.deviceID == "slow-1" }, "taken offline while downloading")
            #expect(try await h.ops.store.device("slow-1")?.online == true)
        }
    }

    /// (b) Once the job ends, the next block of the same session is refused 4.03: the
    /// image does not keep flowing from a cache.
    @Test func theImageStopsFlowingWhenTheJobEnds() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let (offer, image) = try await offer(h, tool, ["gone-1"])
            let download = try #require(offer.download)
            let (client, session) = try await blockClient(h)
            defer { client.shutdown() }
            let first = try await block(session, download, device: "gone-1", number: 0)
            #expect(first.code == .content && first.payload == Array(image.prefix(64)))
            // The device gives up; the gateway withdraws the offer.
            let failed = try await tool.run(
                ["-m", "post", "-e", #"{"job":"\#(offer.job)","state":"failed","reason":"download","detail":"test"}"#],
                uri: uri(h, "progress?d=gone-1"))
            #expect(!failed.log.contains("4."), "\(failed.log)")
            try await eventually("the offer withdrawn") {
                try await tool.run([], uri: uri(h, "job/gone-1?d=gone-1")).text == "{}"
            }
            let next = try await block(session, download, device: "gone-1", number: 1)
            #expect(next.code == .forbidden, "block 1 after the job ended: \(next.code), \(next.payload.count) bytes")
            #expect(String(decoding: next.payload, as: UTF8.self).contains("not_your_job"))
        }
    }

    /// (c) SZX 7 is reserved for Block2 (RFC 7959 2.2): 4.00, not block 0.
    @Test func blockSizeExponentSevenIsABadRequest() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let (offer, _) = try await offer(h, tool, ["big-1"])
            let download = try #require(offer.download)
            let segments = download.split(separator: "/").map(String.init)
            let answer = try RawCoAP.get(
                port: h.stack.configuration.coap.port, path: segments, query: ["d=big-1"], block2: [0x07])
            #expect(answer.code == 0x80, "answered \(answer.code >> 5).\(answer.code & 0x1F), \(answer.payload.count) bytes")
            // The same request with SZX 6 is served.
            let fine = try RawCoAP.get(port: h.stack.configuration.coap.port, path: segments, query: ["d=big-1"], block2: [0x06])
            #expect(fine.code == 0x45 && fine.payload.count == 1024)
        }
    }

    /// (d) A refused request for a block other than 0 is 4.03 with the reason, like block 0;
    /// and progress on another device's job is 4.03 `not_your_job`, not 4.09 `unknown_job`.
    @Test func refusalsAreForbiddenForAnyBlockAndForAnotherDevicesJob() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let (offer, image) = try await offer(h, tool, ["own-1", "thief-1"])
            let download = try #require(offer.download)
            for spec in ["3,64", "0,64", "1,1024"] {
                let got = try await tool.run(["-b", spec], uri: uri(h, "\(download)?d=thief-1"))
                #expect(got.log.contains("4.03") && got.log.contains("not_your_job"), "block \(spec): \(got.log)")
                #expect(got.body.isEmpty || !image.starts(with: got.body))
            }
            let report = try await tool.run(
                ["-m", "post", "-e", #"{"job":"\#(offer.job)","state":"downloading","percent":10}"#],
                uri: uri(h, "progress?d=thief-1"))
            #expect(report.log.contains("4.03") && report.log.contains("not_your_job"), "\(report.log)")
            // The owner's own report is still accepted.
            let own = try await tool.run(
                ["-m", "post", "-e", #"{"job":"\#(offer.job)","state":"downloading","percent":10}"#],
                uri: uri(h, "progress?d=own-1"))
            #expect(!own.log.contains("4."), "\(own.log)")
            // A job nobody has stays 4.09 unknown_job.
            let unknown = try await tool.run(
                ["-m", "post", "-e", #"{"job":"j0000000000000000","state":"downloading","percent":10}"#],
                uri: uri(h, "progress?d=thief-1"))
            #expect(unknown.log.contains("4.09") && unknown.log.contains("unknown_job"), "\(unknown.log)")
        }
    }
}

/// One CoAP request as raw UDP, for options libcoap's client will not send.
enum RawCoAP {
    struct Answer {
        var code: UInt8
        var payload: [UInt8]
    }

    static func get(port: Int, path: [String], query: [String], block2: [UInt8]) throws -> Answer {
        var options: [(Int, [UInt8])] = path.map { (11, Array($0.utf8)) }
        options += query.map { (15, Array($0.utf8)) }
        options.append((23, block2))
        var datagram: [UInt8] = [0x41, 0x01, 0x12, 0x34, 0x7A]  // CON GET, token 0x7A
        var last = 0
        for (number, value) in options {
            let delta = number - last
            last = number
            precondition(delta < 13 && value.count < 269)
            if value.count < 13 {
                datagram.append(UInt8(delta << 4 | value.count))
            } else {
                datagram.append(UInt8(delta << 4 | 13))
                datagram.append(UInt8(value.count - 13))
            }
            datagram += value
        }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw UpdraftError("socket", "errno \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        LoopbackUDP.send(fd, datagram, port: port)
        var buffer = [UInt8](repeating: 0, count: 2048)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count >= 4 else { throw UpdraftError("no_answer", "no CoAP answer on port \(port)") }
        let reply = Array(buffer.prefix(count))
        // Options until the payload marker: each header byte gives delta and length nibbles.
        var index = 4 + Int(reply[0] & 0x0F)
        while index < reply.count, reply[index] != 0xFF {
            let header = reply[index]
            index += 1
            for nibble in [header >> 4] where nibble >= 13 { index += nibble == 13 ? 1 : 2 }
            var length = Int(header & 0x0F)
            if length == 13 { length = 13 + Int(reply[index]); index += 1 }
            else if length == 14 { length = 269 + Int(reply[index]) << 8 + Int(reply[index + 1]); index += 2 }
            index += length
        }
        let payload = index < reply.count ? Array(reply[(index + 1)...]) : []
        return Answer(code: reply[1], payload: payload)
    }
}
