import CoAP
import Foundation
import Testing
import UpdraftTestSupport
import LoopbackPorts

@Suite("CoAPClient against CoAPServer and coap-server-openssl", .timeLimit(.minutes(3)))
struct CoAPClientTests {
    private func session(_ client: CoAPClient, _ fixture: TestServer, secure: Bool) async throws -> CoAPClientSession {
        secure
            ? try await client.session(
                host: "127.0.0.1", port: fixture.securePort,
                security: .psk(identity: "device-1", key: TestServer.keys["device-1"]!))
            : try await client.session(host: "127.0.0.1", port: fixture.port)
    }

    /// Runs `body` with a session to a new test server (to its DTLS port when `secure`);
    /// stops both afterwards.
    private func withSession(
        extraResources: [CoAPResource] = [], secure: Bool = false,
        _ body: (CoAPClientSession, TestServer) async throws -> Void
    ) async throws {
        try await withTestServer(extraResources: extraResources) { fixture in
            let client = CoAPClient(logger: testLogger)
            defer { client.shutdown() }
            try await body(try await session(client, fixture, secure: secure), fixture)
        }
    }

    @Test("GET with Block2 at the client's block size: body byte-identical, Size2 and ETag", arguments: [false, true])
    func blockwiseGet(secure: Bool) async throws {
        try await withSession(secure: secure) { session, fixture in
            var etags: Set<[UInt8]> = []
            for blockSize in [16, 64, 512, 1024] {
                let response = try await session.get("fw/image", blockSize: blockSize)
                #expect(response.code == .content)
                #expect(response.payload == fixture.image, "block size \(blockSize): \(response.payload.count) bytes")
                #expect(response.size2 == fixture.image.count)
                #expect(response.contentFormat == .octetStream)
                let etag = try #require(response.etag)
                etags.insert(etag)
            }
            #expect(etags.count == 1, "the same bytes keep their ETag")
            let identity = try await session.get("whoami")
            #expect(String(decoding: identity.payload, as: UTF8.self) == (secure ? "device-1" : "anonymous"))
        }
    }

    @Test("blocks transferred by the caller: any block on its own, the last one says no more, a resume is byte-identical")
    func callerDrivenBlocks() async throws {
        try await withTestServer { fixture in
            let client = CoAPClient(configuration: .init(blockTransfers: .byCaller), logger: testLogger)
            defer { client.shutdown() }
            let session = try await client.session(host: "127.0.0.1", port: fixture.port)
            let third = try await session.getBlock("fw/image", number: 3, size: 64)
            #expect(third.code == .content)
            #expect(third.payload == Array(fixture.image[192..<256]))
            #expect(third.block2 == CoAPBlock(number: 3, more: true, size: 64))
            let etag = try #require(third.etagValue)
            // The first block tells the whole size (Size2).
            let first = try await session.getBlock("fw/image", number: 0, size: 64)
            #expect(first.size2 == fixture.image.count)
            #expect(first.payload == Array(fixture.image[0..<64]))

            // Resume at block 70 of 1024 bytes: the rest, then a short last block without "more".
            var body = Array(fixture.image[0..<(70 * 1024)])
            var number = 70
            while true {
                let block = try await session.getBlock("fw/image", number: number, size: 1024)
                #expect(block.etagValue == etag, "an ETag the same for every block")
                let info = try #require(block.block2)
                #expect(info.number == number)
                body += block.payload
                guard info.more else { break }
                number += 1
            }
            #expect(number == fixture.image.count / 1024)
            #expect(body == fixture.image)

            let fresh = try await client.session(host: "127.0.0.1", port: fixture.port)
            let past = try await fresh.getBlock("fw/image", number: 2000, size: 1024)
            #expect(past.code == .badRequest)
            // On a session that just fetched the body, libcoap 4.3.1 answers from its own
            // block state (5.00) before the handler sees the request: still an error.
            let pastAfter = try await session.getBlock("fw/image", number: 2000, size: 1024)
            #expect(!pastAfter.code.isSuccess)
        }
    }

    @Test("getBlock needs a client whose blocks are transferred by the caller")
    func getBlockNeedsCallerMode() async throws {
        try await withSession { session, fixture in
            await #expect(throws: CoAPError.self) { try await session.getBlock("fw/image", number: 1, size: 64) }
            var request = CoAPClientRequest(method: .get, path: "fw/image", blockSize: 64)
            request.blockNumber = 2
            await #expect(throws: CoAPError.self) { try await session.request(request) }
        }
    }

    @Test("POST a block-wise payload to a deferred handler", arguments: [false, true])
    func post(secure: Bool) async throws {
        try await withSession(secure: secure) { session, fixture in
            let small = try await session.post("echo", payload: Array("hello".utf8), contentFormat: .textPlain)
            #expect(small.code == .changed)
            #expect(String(decoding: small.payload, as: UTF8.self) == "olleh")
            #expect(small.contentFormat == .textPlain)

            let body = randomBytes(3_000)
            let large = try await session.post("echo", payload: body)
            #expect(large.code == .changed)
            #expect(large.payload == Array(body.reversed()))

            // Concurrent requests on one session are matched by token.
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<8 {
                    group.addTask {
                        let payload = Array("request-\(index)".utf8)
                        let response = try await session.post("echo", payload: payload)
                        return response.payload == Array(payload.reversed())
                    }
                }
                for try await matched in group {
                    #expect(matched)
                }
            }
        }
    }

    @Test("the handler sees method, path, query, formats, payload, PSK identity and the peer's address")
    func requestValue() async throws {
        try await withSession(secure: true) { session, fixture in
            let get = try await session.get("inspect", query: ["device=42", "v=2", "flag"], accept: .json)
            #expect(get.code == .content)
            #expect(get.contentFormat == .json)
            #expect(get.maxAge == 7)
            let seen = try Inspection(get.payload)
            #expect(seen.method == "GET")
            #expect(seen.path == "inspect")
            #expect(seen.query == ["device=42", "v=2", "flag"])
            #expect(seen.device == "42")
            #expect(seen.accept == CoAPContentFormat.json.rawValue)
            #expect(seen.contentFormat == nil)
            #expect(seen.pskIdentity == "device-1")
            #expect(seen.remoteHost == "127.0.0.1")
            #expect(seen.remotePort > 0)

            let post = try await session.request(
                CoAPClientRequest(
                    method: .post, path: "inspect", payload: randomBytes(2_500), contentFormat: .cbor, blockSize: 128))
            let posted = try Inspection(post.payload)
            #expect(posted.method == "POST")
            #expect(posted.payloadCount == 2_500)
            #expect(posted.contentFormat == CoAPContentFormat.cbor.rawValue)
            #expect(posted.remotePort == seen.remotePort)
        }
    }

    @Test("4.04 and 4.05 come back as responses, not errors")
    func errorCodes() async throws {
        try await withSession { session, _ async throws in
            #expect(try await session.get("missing").code == .notFound)
            #expect(try await session.put("fw/image", payload: [1]).code == .methodNotAllowed)
        }
    }

    @Test("Observe: the current representation, then each notification", arguments: [false, true])
    func observe(secure: Bool) async throws {
        try await withSession(secure: secure) { session, fixture in
            var notifications = session.observe("state").makeAsyncIterator()
            let first = try #require(try await notifications.next())
            #expect(String(decoding: first.payload, as: UTF8.self) == "v1")
            #expect(first.observe != nil)
            fixture.update("v2")
            let second = try #require(try await notifications.next())
            #expect(String(decoding: second.payload, as: UTF8.self) == "v2")
            fixture.update("v3")
            let third = try #require(try await notifications.next())
            #expect(String(decoding: third.payload, as: UTF8.self) == "v3")
        }
    }

    @Test("notifications larger than a datagram arrive whole (Block2)")
    func largeNotifications() async throws {
        let body = Locked(randomBytes(3_000))
        let large = CoAPResource(
            path: "large", observable: true,
            handlers: [.get: .immediate { _ in CoAPResponse(payload: body.withLock { $0 }) }])
        try await withSession(extraResources: [large]) { session, fixture in
            var notifications = session.observe("large", blockSize: 256).makeAsyncIterator()
            let first = try #require(try await notifications.next())
            #expect(first.payload == body.withLock { $0 })
            let next = randomBytes(5_000)
            body.withLock { $0 = next }
            fixture.server.notifyObservers(path: "large")
            let second = try #require(try await notifications.next())
            #expect(second.payload == next)
        }
    }

    @Test("a server and clients can share one loop: every libcoap call on one thread")
    func sharedLoop() async throws {
        let loop = CoAPEventLoop(name: "coap-shared", logger: testLogger)
        defer { loop.shutdown() }
        let port = PortProbe.udpPortBelowEphemeralRange()
        let server = CoAPServer(configuration: .init(host: "127.0.0.1", port: port), loop: loop, logger: testLogger)
        try server.addResource(
            CoAPResource(path: "ping", handlers: [.get: .immediate { _ in CoAPResponse(payload: Array("pong".utf8)) }]))
        try server.start()
        let client = CoAPClient(loop: loop, logger: testLogger)
        let session = try await client.session(host: "127.0.0.1", port: port)
        #expect(try await session.get("ping").payload == Array("pong".utf8))

        client.shutdown()
        server.stop()
        #expect(server.libcoapReferenceCount == 0)
        #expect(client.libcoapReferenceCount == 0)
        // The loop outlives them: a new server on it works.
        try server.start()
        let again = CoAPClient(loop: loop, logger: testLogger)
        defer { again.shutdown() }
        #expect(try await again.session(host: "127.0.0.1", port: port).get("ping").code == .content)
        // Shutting the loop down stops what runs on it.
        loop.shutdown()
        let error = await #expect(throws: CoAPError.self) { try await again.session(host: "127.0.0.1", port: port) }
        #expect(error?.code == .notRunning)
        server.stop()
        #expect(server.libcoapReferenceCount == 0)
    }

    @Test("observing a resource that is not observable yields one response and ends")
    func observeNotObservable() async throws {
        try await withSession { session, fixture in
            var responses: [CoAPClientResponse] = []
            for try await response in session.observe("whoami") {
                responses.append(response)
            }
            #expect(responses.count == 1)
            #expect(String(decoding: responses.first?.payload ?? [], as: UTF8.self) == "anonymous")
            var missing: [CoAPClientResponse] = []
            for try await response in session.observe("missing") {
                missing.append(response)
            }
            #expect(missing.map(\.code) == [.notFound])
        }
    }

    @Test("a wrong PSK fails the request with sessionFailed; the right one works afterwards")
    func wrongPSK() async throws {
        try await withTestServer { fixture in
            let client = CoAPClient(logger: testLogger)
            defer { client.shutdown() }
            let wrong = try await client.session(
                host: "127.0.0.1", port: fixture.securePort, security: .psk(identity: "device-1", key: Array("nope".utf8)))
            // The server drops a handshake made with the wrong key: the client gives up at its timeout.
            let error = await #expect(throws: CoAPError.self) { try await wrong.get("whoami", timeout: .seconds(5)) }
            #expect(error?.code == .sessionFailed, "\(String(describing: error))")

            let unknown = try await client.session(
                host: "127.0.0.1", port: fixture.securePort, security: .psk(identity: "stranger", key: [1, 2, 3]))
            let unknownError = await #expect(throws: CoAPError.self) { try await unknown.get("whoami", timeout: .seconds(5)) }
            #expect(unknownError?.code == .sessionFailed, "\(String(describing: unknownError))")

            let right = try await client.session(
                host: "127.0.0.1", port: fixture.securePort,
                security: .psk(identity: "device-2", key: TestServer.keys["device-2"]!))
            #expect(String(decoding: try await right.get("whoami").payload, as: UTF8.self) == "device-2")
        }
    }

    @Test("many sessions with their own PSK identities share one client loop")
    func manySessions() async throws {
        try await withTestServer { fixture in
            let client = CoAPClient(logger: testLogger)
            defer { client.shutdown() }
            try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<10 {
                    let identity = index % 2 == 0 ? "device-1" : "device-2"
                    group.addTask {
                        let session = try await client.session(
                            host: "127.0.0.1", port: fixture.securePort,
                            security: .psk(identity: identity, key: TestServer.keys[identity]!))
                        let response = try await session.get("whoami")
                        session.close()
                        return String(decoding: response.payload, as: UTF8.self)
                    }
                }
                var seen: [String: Int] = [:]
                for try await identity in group {
                    seen[identity, default: 0] += 1
                }
                #expect(seen == ["device-1": 5, "device-2": 5])
            }
        }
    }

    @Test("against coap-server-openssl: PUT and GET a dynamic resource block-wise, observe its clock")
    func againstLibcoapServer() async throws {
        try await withTemporaryDirectory { directory in
            let port = try #require(PortProbe.udpPortPair(), "no two consecutive free UDP ports")
            let server = try SpawnedProcess(
                CoAPTools.server, ["-A", "127.0.0.1", "-p", "\(port)", "-d", "10", "-k", "tool-secret"],
                directory: directory)
            defer { server.stop() }
            let client = CoAPClient(logger: testLogger)
            defer { client.shutdown() }
            let session = try await client.session(host: "127.0.0.1", port: port)

            // The tool needs a moment to bind: retry the first request until it answers.
            let body = randomBytes(3_000)
            var created: CoAPClientResponse?
            for _ in 0..<50 where created == nil {
                created = try? await session.put("dyn", payload: body, timeout: .seconds(2))
            }
            #expect(created?.code == .created, "\(server.output)")
            for blockSize in [16, 64, 1024] {
                let fetched = try await session.get("dyn", blockSize: blockSize)
                #expect(fetched.code == .content)
                #expect(fetched.payload == body, "block size \(blockSize)")
            }

            var clock = session.observe("time").makeAsyncIterator()
            let first = try #require(try await clock.next())
            #expect(first.code == .content)
            let second = try #require(try await clock.next())
            #expect(second.observe != nil)

            // coap-server-openssl serves DTLS on port + 1 with its one key for any identity.
            let secure = try await client.session(
                host: "127.0.0.1", port: port + 1, security: .psk(identity: "any", key: Array("tool-secret".utf8)))
            let overDTLS = try await secure.get("dyn", blockSize: 256)
            #expect(overDTLS.payload == body)
            let wrong = try await client.session(
                host: "127.0.0.1", port: port + 1, security: .psk(identity: "any", key: Array("other".utf8)))
            let refused = await #expect(throws: CoAPError.self) { try await wrong.get("dyn", timeout: .seconds(5)) }
            #expect(refused?.code == .sessionFailed)
        }
    }

    @Test("no server: the request fails instead of hanging")
    func unreachable() async throws {
        let client = CoAPClient(logger: testLogger)
        defer { client.shutdown() }
        let session = try await client.session(host: "127.0.0.1", port: PortProbe.ephemeralUDPPort())
        let error = await #expect(throws: CoAPError.self) { try await session.get("anything", timeout: .seconds(5)) }
        #expect(error?.code == .sendFailed || error?.code == .timeout, "\(String(describing: error))")
    }

    @Test("a cancelled request throws CancellationError and the session stays usable")
    func cancellation() async throws {
        let slow = CoAPResource(
            path: "slow",
            handlers: [
                .get: .deferred { _ in
                    try await Task.sleep(for: .seconds(3600))
                    return CoAPResponse()
                }
            ])
        try await withSession(extraResources: [slow]) { session, fixture in
            let task = Task { try await session.get("slow") }
            try await Task.sleep(for: .milliseconds(200))
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
            #expect(String(decoding: try await session.get("whoami").payload, as: UTF8.self) == "anonymous")
        }
    }

    @Test("shutdown ends observations and pending requests, frees the context, releases every reference")
    func shutdown() async throws {
        try await withTestServer { fixture in
            let client = CoAPClient(logger: testLogger)
            let session = try await client.session(host: "127.0.0.1", port: fixture.port)
            let large = try await session.post("echo", payload: randomBytes(2_000))
            #expect(large.code == .changed)
            var notifications = session.observe("state").makeAsyncIterator()
            _ = try #require(try await notifications.next())
            #expect(client.libcoapReferenceCount >= 1)

            client.shutdown()
            #expect(client.libcoapReferenceCount == 0)
            let ended = await #expect(throws: CoAPError.self) { try await notifications.next() }
            #expect(ended?.code == .notRunning)
            let error = await #expect(throws: CoAPError.self) { try await session.get("whoami") }
            #expect(error?.code == .notRunning)
            client.shutdown()
        }
    }

    @Test("invalid arguments are rejected before anything is sent")
    func invalidArguments() async throws {
        let client = CoAPClient(logger: testLogger)
        defer { client.shutdown() }
        let session = try await client.session(host: "127.0.0.1", port: 5683)
        let size = await #expect(throws: CoAPError.self) { try await session.get("x", blockSize: 100) }
        #expect(size?.code == .invalidArgument)
        let key = await #expect(throws: CoAPError.self) {
            try await client.session(host: "127.0.0.1", port: 5684, security: .psk(identity: "a", key: []))
        }
        #expect(key?.code == .invalidArgument)
        let host = await #expect(throws: CoAPError.self) {
            try await client.session(host: "no-such-host.invalid", port: 5683)
        }
        #expect(host?.code == .resolveFailed)
    }
}
