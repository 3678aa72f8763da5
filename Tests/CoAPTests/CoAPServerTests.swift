import CoAP
import Foundation
import Testing
import LoopbackPorts
import UpdraftTestSupport

@Suite("CoAPServer against coap-client-openssl", .timeLimit(.minutes(3)))
struct CoAPServerTests {
    @Test(
        "coap-client downloads 100_000 bytes block-wise, byte-identical, over CoAP and DTLS-PSK",
        arguments: [false, true], [16, 64, 512, 1024])
    func blockwiseDownload(secure: Bool, blockSize: Int) async throws {
        try await withTestServer { fixture in
            try await withTemporaryDirectory { directory in
                let file = directory.appendingPathComponent("image")
                let psk = secure ? ["-u", "device-1", "-k", "secret-1"] : []
                let url = secure ? fixture.secureURL : fixture.url
                let result = try await runCoAPClient(
                    ["-b", "\(blockSize)"] + psk + ["-o", file.path, "\(url)/fw/image"], directory: directory)
                #expect(result.status == 0, "\(result.output)")
                let received = try [UInt8](Data(contentsOf: file))
                #expect(received.count == fixture.image.count, "\(result.output)")
                #expect(received == fixture.image, "\(received.count) bytes; \(result.output)")
            }
        }
    }

    @Test("block-wise responses carry Size2 and a stable ETag")
    func size2AndETag() async throws {
        try await withTestServer { fixture in
            try await withTemporaryDirectory { directory in
                var etags: Set<String> = []
                for blockSize in [64, 1024] {
                    // Verbosity 7 prints each received PDU with its options.
                    let result = try await runCoAPClient(
                        ["-v", "7", "-b", "\(blockSize)", "-o", directory.appendingPathComponent("out").path,
                         "\(fixture.url)/fw/image"],
                        directory: directory)
                    #expect(result.output.contains("Size2:100000"), "\(result.output.suffix(2000))")
                    #expect(result.output.contains("Block2:1/M/\(blockSize)"), "\(result.output.suffix(2000))")
                    let tags = result.output.matches(of: /ETag:(0x[0-9a-f]+)/).map { String($0.output.1) }
                    #expect(!tags.isEmpty)
                    etags.formUnion(tags)
                }
                #expect(etags.count == 1, "one ETag for the same bytes, got \(etags)")
            }
        }
    }

    @Test("the handler sees the authenticated PSK identity; plain UDP has none")
    func pskIdentity() async throws {
        try await withTestServer { fixture in
            try await withTemporaryDirectory { directory in
                let secure = try await runCoAPClient(
                    ["-u", "device-2", "-k", "secret-2", "\(fixture.secureURL)/whoami"], directory: directory)
                #expect(secure.output.contains("device-2"), "\(secure.output)")
                let plain = try await runCoAPClient(["\(fixture.url)/whoami"], directory: directory)
                #expect(plain.output.contains("anonymous"), "\(plain.output)")
                #expect(fixture.lookedUp.withLock { $0 }.contains("device-2"))
            }
        }
    }

    @Test("wrong key or unknown identity fails the DTLS handshake; the endpoint keeps serving")
    func wrongPSK() async throws {
        try await withTestServer { fixture in
            try await withTemporaryDirectory { directory in
                let wrongKey = try await runCoAPClient(
                    ["-B", "5", "-u", "device-1", "-k", "secret-2", "\(fixture.secureURL)/whoami"], directory: directory)
                #expect(!wrongKey.output.contains("device-1"), "\(wrongKey.output)")
                let unknown = try await runCoAPClient(
                    ["-B", "5", "-u", "intruder", "-k", "secret-1", "\(fixture.secureURL)/whoami"], directory: directory)
                #expect(!unknown.output.contains("intruder"), "\(unknown.output)")
                #expect(fixture.lookedUp.withLock { $0 }.contains("intruder"))

                let good = try await runCoAPClient(
                    ["-u", "device-1", "-k", "secret-1", "\(fixture.secureURL)/whoami"], directory: directory)
                #expect(good.output.contains("device-1"), "\(good.output)")
            }
        }
    }

    @Test("unknown path answers 4.04 and a method without handler 4.05 (libcoap's own answers)")
    func notFoundAndMethodNotAllowed() async throws {
        try await withTestServer { fixture in
            try await withTemporaryDirectory { directory in
                let missing = try await runCoAPClient(["\(fixture.url)/no/such/thing"], directory: directory)
                #expect(missing.output.contains("4.04"), "\(missing.output)")
                let wrongMethod = try await runCoAPClient(
                    ["-m", "put", "-e", "x", "\(fixture.url)/fw/image"], directory: directory)
                #expect(wrongMethod.output.contains("4.05"), "\(wrongMethod.output)")
                let missingOverDTLS = try await runCoAPClient(
                    ["-m", "get", "\(fixture.secureURL)/nothing", "-u", "device-1", "-k", "secret-1"], directory: directory)
                #expect(missingOverDTLS.output.contains("4.04"), "\(missingOverDTLS.output)")
            }
        }
    }

    @Test("a deferred handler gets a block-wise upload whole and answers separately, block-wise")
    func deferredHandlerWithBlock1Upload() async throws {
        try await withTestServer { fixture in
            try await withTemporaryDirectory { directory in
                let body = randomBytes(5_000)
                let input = directory.appendingPathComponent("body")
                try Data(body).write(to: input)
                let output = directory.appendingPathComponent("answer")
                let result = try await runCoAPClient(
                    ["-m", "post", "-b", "64", "-f", input.path, "-o", output.path, "\(fixture.url)/echo"],
                    directory: directory)
                let answer = try [UInt8](Data(contentsOf: output))
                #expect(answer == Array(body.reversed()), "\(answer.count) bytes; \(result.output)")
            }
        }
    }

    @Test("a deferred handler that throws answers 5.00")
    func deferredHandlerThrows() async throws {
        let failing = CoAPResource(
            path: "fail", handlers: [.post: .deferred { _ in throw ToolFailure(description: "boom") }])
        try await withTestServer(extraResources: [failing]) { fixture in
            try await withTemporaryDirectory { directory in
                let failed = try await runCoAPClient(["-m", "post", "-e", "x", "\(fixture.url)/fail"], directory: directory)
                #expect(failed.output.contains("5.00"), "\(failed.output)")
                let after = try await runCoAPClient(["\(fixture.url)/whoami"], directory: directory)
                #expect(after.output.contains("anonymous"), "\(after.output)")
            }
        }
    }

    @Test("a deferred handler slower than handlerTimeout is cancelled and the request answered 5.03")
    func deferredHandlerTimesOut() async throws {
        let cancelled = Locked(false)
        let hung = CoAPResource(
            path: "hang",
            handlers: [
                .get: .deferred { _ in
                    do {
                        try await Task.sleep(for: .seconds(3600))
                    } catch {
                        cancelled.withLock { $0 = true }
                        throw error
                    }
                    return CoAPResponse()
                }
            ])
        try await withTestServer(extraResources: [hung], handlerTimeout: .seconds(2)) { fixture in
            try await withTemporaryDirectory { directory in
                let timedOut = try await runCoAPClient(["\(fixture.url)/hang"], directory: directory)
                #expect(timedOut.output.contains("5.03"), "\(timedOut.output)")
                #expect(await eventually { cancelled.withLock { $0 } })
                let after = try await runCoAPClient(["\(fixture.url)/whoami"], directory: directory)
                #expect(after.output.contains("anonymous"), "\(after.output)")
            }
        }
    }

    @Test("deferred: empty ACK at once, the same for a retransmission, then one separate CON response")
    func separateResponseOnTheWire() async throws {
        let gate = Locked(false)
        let calls = Locked(0)
        let gated = CoAPResource(
            path: "gated",
            handlers: [
                .get: .deferred { _ in
                    calls.withLock { $0 += 1 }
                    while !gate.withLock({ $0 }) {
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    return CoAPResponse(payload: Array("done".utf8), contentFormat: .textPlain)
                }
            ])
        try await withTestServer(extraResources: [gated]) { fixture in
            let peer = try RawPeer()
            let request = rawRequest(mid: 0x1111, token: [0xAB, 0xCD], options: [(11, Array("gated".utf8))])
            try peer.send(request, to: fixture.port)
            let ack = try #require(try await peer.receive().flatMap(RawHeader.init))
            #expect(ack == RawHeader(type: 2, code: 0, messageID: 0x1111, token: []))

            // A retransmission of the request while the handler runs: acknowledged again, not handled again.
            try peer.send(request, to: fixture.port)
            let again = try #require(try await peer.receive().flatMap(RawHeader.init))
            #expect(again == ack)

            gate.withLock { $0 = true }
            let datagram = try #require(try await peer.receive())
            let separate = try #require(RawHeader(datagram))
            #expect(separate.type == 0)
            #expect(separate.code == 0x45)
            #expect(separate.token == [0xAB, 0xCD])
            #expect(RawHeader.payload(datagram) == Array("done".utf8))
            try peer.send(
                [0x60, 0x00, UInt8(separate.messageID >> 8), UInt8(separate.messageID & 0xFF)], to: fixture.port)
            #expect(calls.withLock { $0 } == 1)
        }
    }

    @Test("coap-client -s observes a resource and receives the notification")
    func observeWithCoAPClient() async throws {
        try await withTestServer { fixture in
            try await withTemporaryDirectory { directory in
                let observer = try SpawnedProcess(
                    CoAPTools.client, ["-s", "60", "-w", "\(fixture.url)/state"], directory: directory)
                defer { observer.stop() }
                #expect(await eventually { observer.output.contains("v1") }, "\(observer.output)")
                fixture.update("v2")
                #expect(await eventually { observer.output.contains("v2") }, "\(observer.output)")
                fixture.update("v3")
                #expect(await eventually { observer.output.contains("v3") }, "\(observer.output)")
            }
        }
    }

    @Test("malformed datagrams neither crash nor stall the endpoint")
    func hostileInput() async throws {
        try await withTestServer { fixture in
            var datagrams: [[UInt8]] = [
                [],
                [0xFF],
                [0x00, 0x01, 0x00, 0x01],  // version 0
                [0x4F, 0x01, 0x12, 0x34] + [UInt8](repeating: 7, count: 8),  // token length 15
                [0x40, 0x01, 0x00, 0x02, 0xF0],  // reserved option delta
                [0x40, 0x01, 0x00, 0x03, 0xBD, 0x05],  // option length past the end
                [0x40, 0x01, 0x00, 0x04, 0xFF],  // payload marker without payload
                rawRequest(mid: 5, options: [(11, Array("fw".utf8)), (11, Array("image".utf8)), (65001, [1])]),
                [0x60, 0x45, 0x00, 0x06, 0x01],  // a 2.05 ACK nobody asked for
                [0x70, 0x00, 0x00, 0x07],  // a reset for an unknown message
                rawRequest(mid: 8, code: 0x45, options: [(11, Array("state".utf8))]),  // a response sent as a request
                // Block2 far past the end of fw/image (block 0xFFFFF of 16 bytes).
                rawRequest(mid: 9, options: [(11, Array("fw".utf8)), (11, Array("image".utf8)), (23, [0xFF, 0xFF, 0xF0])]),
                // Block2 number 1 of 1024 bytes, then never the rest.
                rawRequest(mid: 10, options: [(11, Array("fw".utf8)), (11, Array("image".utf8)), (23, [0x16])]),
                rawRequest(mid: 11, code: 0x02, options: [(11, Array("echo".utf8)), (60, [0xFF, 0xFF, 0xFF, 0xFF])]),
                // Block2 with the reserved size exponent 7, and a Block2 value longer than 3 bytes.
                rawRequest(mid: 12, options: [(11, Array("fw".utf8)), (11, Array("image".utf8)), (23, [0x07])]),
                rawRequest(mid: 13, options: [(11, Array("fw".utf8)), (11, Array("image".utf8)), (23, [0, 0, 0, 0x16])]),
                // A deferred handler's request with a token of 8 bytes, then its duplicate.
                rawRequest(mid: 14, code: 0x02, token: [1, 2, 3, 4, 5, 6, 7, 8], options: [(11, Array("echo".utf8))], payload: [1]),
                rawRequest(mid: 14, code: 0x02, token: [1, 2, 3, 4, 5, 6, 7, 8], options: [(11, Array("echo".utf8))], payload: [1]),
            ]
            for _ in 0..<20 {
                datagrams.append(randomBytes(Int.random(in: 1...1400)))
            }
            datagrams.append(randomBytes(9_000))
            try sendDatagrams(datagrams, to: fixture.port)
            try sendDatagrams(datagrams, to: fixture.securePort)

            try await withTemporaryDirectory { directory in
                let plain = try await runCoAPClient(["\(fixture.url)/whoami"], directory: directory)
                #expect(plain.output.contains("anonymous"), "\(plain.output)")
                let file = directory.appendingPathComponent("image")
                _ = try await runCoAPClient(
                    ["-b", "512", "-u", "device-1", "-k", "secret-1", "-o", file.path, "\(fixture.secureURL)/fw/image"],
                    directory: directory)
                #expect(try [UInt8](Data(contentsOf: file)) == fixture.image)
            }
        }
    }

    @Test("stop() frees the context and releases every reference libcoap held; start() works again")
    func stopReleasesEverything() async throws {
        let fixture = try TestServer(rebindable: true)
        let server = fixture.server
        try server.start()
        defer { server.stop() }
        #expect(server.isRunning)
        // A Block2 transfer left unfinished (GET blocks are cut per request; libcoap keeps
        // the context's and the resources' references).
        try sendDatagrams(
            [rawRequest(mid: 1, options: [(11, Array("fw".utf8)), (11, Array("image".utf8)), (23, [0x00])])],
            to: fixture.port)
        try await withTemporaryDirectory { directory in
            let result = try await runCoAPClient(["\(fixture.url)/whoami"], directory: directory)
            #expect(result.output.contains("anonymous"))
        }
        #expect(server.libcoapReferenceCount > 1)
        server.stop()
        #expect(!server.isRunning)
        #expect(server.libcoapReferenceCount == 0)
        server.stop()

        try server.start()
        try await withTemporaryDirectory { directory in
            let result = try await runCoAPClient(["\(fixture.url)/whoami"], directory: directory)
            #expect(result.output.contains("anonymous"), "\(result.output)")
        }
        server.stop()
        #expect(server.libcoapReferenceCount == 0)
    }

    @Test("run() serves until its task is cancelled")
    func runUntilCancelled() async throws {
        let fixture = try TestServer()
        let task = Task { try await fixture.server.run() }
        #expect(await eventually { fixture.server.isRunning })
        try await withTemporaryDirectory { directory in
            let result = try await runCoAPClient(["\(fixture.url)/whoami"], directory: directory)
            #expect(result.output.contains("anonymous"), "\(result.output)")
        }
        task.cancel()
        try await task.value
        #expect(!fixture.server.isRunning)
        #expect(fixture.server.libcoapReferenceCount == 0)
    }

    @Test("configuration and registration errors are typed and say what to do")
    func errors() async throws {
        let port = PortProbe.ephemeralUDPPort()
        let first = CoAPServer(configuration: .init(host: "127.0.0.1", port: port), logger: testLogger)
        let resource = CoAPResource(path: "/a/b/", handlers: [.get: .immediate { _ in CoAPResponse() }])
        #expect(resource.path == "a/b")
        try first.addResource(resource)
        let duplicate = #expect(throws: CoAPError.self) { try first.addResource(resource) }
        #expect(duplicate?.code == .resourceConflict)
        try first.start()
        defer { first.stop() }
        let again = #expect(throws: CoAPError.self) { try first.start() }
        #expect(again?.code == .invalidArgument)

        let second = CoAPServer(configuration: .init(host: "127.0.0.1", port: port), logger: testLogger)
        let bind = #expect(throws: CoAPError.self) { try second.start() }
        #expect(bind?.code == .bindFailed)
        #expect(bind?.message.contains("choose another port") == true, "\(String(describing: bind))")
        #expect(!second.isRunning)

        let noPSK = CoAPServer(
            configuration: .init(host: "127.0.0.1", port: nil, securePort: PortProbe.ephemeralUDPPort()), logger: testLogger)
        let psk = #expect(throws: CoAPError.self) { try noPSK.start() }
        #expect(psk?.code == .invalidArgument)

        let badHost = CoAPServer(configuration: .init(host: "no-such-host.invalid", port: port), logger: testLogger)
        let resolve = #expect(throws: CoAPError.self) { try badHost.start() }
        #expect(resolve?.code == .resolveFailed)

        let observable = CoAPResource(
            path: "obs", observable: true, handlers: [.get: .deferred { _ in CoAPResponse() }])
        let observe = #expect(throws: CoAPError.self) { try first.addResource(observable) }
        #expect(observe?.code == .invalidArgument)
    }
}

/// A CoAP message in wire format (RFC 7252 section 3), options sorted by number.
func rawRequest(
    mid: UInt16, code: UInt8 = 0x01, type: UInt8 = 0, token: [UInt8] = [0x42], options: [(Int, [UInt8])],
    payload: [UInt8] = []
) -> [UInt8] {
    var bytes: [UInt8] = [0x40 | type << 4 | UInt8(token.count), code, UInt8(mid >> 8), UInt8(mid & 0xFF)]
    bytes += token
    var previous = 0
    func nibble(_ value: Int) -> (UInt8, [UInt8]) {
        switch value {
        case ..<13: (UInt8(value), [])
        case ..<269: (13, [UInt8(value - 13)])
        default: (14, [UInt8((value - 269) >> 8), UInt8((value - 269) & 0xFF)])
        }
    }
    for (number, value) in options.sorted(by: { $0.0 < $1.0 }) {
        let (delta, deltaExtension) = nibble(number - previous)
        let (length, lengthExtension) = nibble(value.count)
        bytes.append(delta << 4 | length)
        bytes += deltaExtension + lengthExtension + value
        previous = number
    }
    if !payload.isEmpty {
        bytes.append(0xFF)
        bytes += payload
    }
    return bytes
}
