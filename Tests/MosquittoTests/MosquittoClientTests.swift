import Foundation
import Mosquitto
import Testing
import UpdraftTestSupport

@Suite("MosquittoClient against a real broker", .timeLimit(.minutes(3)))
struct MosquittoClientTests {
    @Test("QoS 0 and QoS 1 round trips keep topic and payload bytes, including 64 KiB binary")
    func roundTrip() async throws {
        try await withBroker { broker in
            let subscriber = try await broker.connectedClient("rt-sub")
            let publisher = try await broker.connectedClient("rt-pub")
            #expect(subscriber.isConnected)
            try await subscriber.subscribe("rt/#", qos: .atLeastOnce)

            var generator = SystemRandomNumberGenerator()
            let big = (0..<65_536).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let cases: [(topic: String, payload: [UInt8], qos: QoS)] = [
                ("rt/qos0", [0, 1, 2, 255], .atMostOnce),
                ("rt/qos1", [9, 8, 7], .atLeastOnce),
                ("rt/empty", [], .atLeastOnce),
                ("rt/big0", big, .atMostOnce),
                ("rt/big1", big, .atLeastOnce),
            ]
            for sent in cases {
                try await publisher.publish(topic: sent.topic, payload: sent.payload, qos: sent.qos)
                let received = try #require(try await subscriber.nextMessage())
                #expect(received.topic == sent.topic)
                #expect(received.payload == sent.payload)
                #expect(received.qos == sent.qos)
                #expect(!received.retain)
            }

            // A slice is published without copying it into an array first.
            try await publisher.publish(topic: "rt/slice", payload: big[1000..<5096], qos: .atLeastOnce)
            let slice = try #require(try await subscriber.nextMessage())
            #expect(slice.payload == Array(big[1000..<5096]))

            await publisher.disconnect()
            await subscriber.disconnect()
            #expect(!subscriber.isConnected)
        }
    }

    @Test("publishNoWait keeps order and retained messages reach later subscribers")
    func publishNoWaitAndRetain() async throws {
        try await withBroker { broker in
            let subscriber = try await broker.connectedClient("nw-sub")
            let publisher = try await broker.connectedClient("nw-pub")
            try await subscriber.subscribe("nw/stream", qos: .atLeastOnce)

            for index in 0..<200 {
                publisher.publishNoWait(topic: "nw/stream", payload: Self.encode(index), qos: .atLeastOnce)
            }
            for index in 0..<200 {
                let message = try #require(try await subscriber.nextMessage())
                #expect(Self.decode(message.payload) == index)
            }
            #expect(publisher.failedPublishCount == 0)

            try await publisher.publish(topic: "nw/retained", payload: [42], qos: .atLeastOnce, retain: true)
            let late = try await broker.connectedClient("nw-late", subscribedTo: "nw/retained")
            let retained = try #require(try await late.nextMessage())
            #expect(retained.retain)
            #expect(retained.payload == [42])

            await late.disconnect()
            await publisher.disconnect()
            await subscriber.disconnect()
        }
    }

    @Test("wrong password: connect throws a typed refusal", arguments: [MosquittoOptions.ProtocolVersion.v311, .v5])
    func refusedCredentials(version: MosquittoOptions.ProtocolVersion) async throws {
        let secured = try TestBroker(config: ["allow_anonymous false"])
        let passwords = try secured.makePasswordFile(user: "alice", password: "right")
        secured.extraConfig.append("password_file \(passwords)")
        try await secured.start()
        defer { secured.stop() }

        var options = secured.options(clientID: "auth-bad")
        options.protocolVersion = version
        options.username = "alice"
        options.password = "wrong"
        let client = MosquittoClient(options: options, logger: testLogger)
        let error = try await #require(throws: MosquittoError.self) {
            try await client.connect(timeout: .seconds(10))
        }
        #expect(error.isConnectionRefused)
        #expect(error.isNotAuthorized)
        #expect(error.operation == "connect")
        switch version {
        case .v311:
            #expect(error.connackCode == 5)
            #expect(error.message.contains("not authorised"))
        case .v5:
            // MQTT 5 reason codes: 0x86 bad user name or password, 0x87 not authorized.
            #expect(error.connackCode == 0x86 || error.connackCode == 0x87)
            #expect(error.message.contains("check the username, password"))
        }
        #expect(!client.isConnected)

        options.clientID = "auth-good"
        options.password = "right"
        let good = MosquittoClient(options: options, logger: testLogger)
        try await good.connect()
        #expect(good.isConnected)
        await good.disconnect()
    }

    @Test("TLS: connects with CA verification, round-trips, and rejects an unknown CA")
    func tls() async throws {
        let broker = try TestBroker()
        let files = try broker.makeTLSFiles()
        broker.extraConfig += ["cafile \(files.caFile)", "certfile \(files.certFile)", "keyfile \(files.keyFile)"]
        try await broker.start()
        defer { broker.stop() }

        let client = try await broker.connectedClient("tls", subscribedTo: "tls/echo") {
            $0.tls = .init(caFile: files.caFile, tlsVersion: "tlsv1.2")
        }
        let payload = (0..<20_000).map { UInt8(truncatingIfNeeded: $0) }
        try await client.publish(topic: "tls/echo", payload: payload, qos: .atLeastOnce)
        let echo = try #require(try await client.nextMessage())
        #expect(echo.payload == payload)
        await client.disconnect()

        // The server certificate does not chain to this CA (the server's own certificate is no CA).
        var untrusted = broker.options(clientID: "tls-untrusted")
        untrusted.tls = .init(caFile: files.certFile)
        let rejected = MosquittoClient(options: untrusted, logger: testLogger)
        let error = try await #require(throws: MosquittoError.self) {
            try await rejected.connect(timeout: .seconds(1))
        }
        #expect(error.isTimeout)
        #expect(error.message.contains("TLS"))
        #expect(!rejected.isConnected)
    }

    @Test("connect keeps retrying while the broker is down, then times out or succeeds")
    func connectRetriesUntilTimeout() async throws {
        let broker = try TestBroker()
        var options = broker.options(clientID: "retry")
        options.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maxDelay: .milliseconds(200))

        let early = MosquittoClient(options: options, logger: testLogger)
        let error = try await #require(throws: MosquittoError.self) {
            try await early.connect(timeout: .milliseconds(500))
        }
        #expect(error.isTimeout)
        #expect(error.message.contains("refused"))

        let client = MosquittoClient(options: options, logger: testLogger)
        async let connected: Void = client.connect(timeout: .seconds(30))
        try await broker.start()
        defer { broker.stop() }
        try await connected
        #expect(client.isConnected)
        await client.disconnect()
    }

    @Test("the will is published when the connection drops without DISCONNECT")
    func lastWill() async throws {
        try await withBroker { broker in
            let watcher = try await broker.connectedClient("will-watch", subscribedTo: "wills/#")

            let device = try await broker.connectedClient("will-device") { options in
                options.will = .init(topic: "wills/device", payload: [0xDE, 0xAD], qos: .atLeastOnce)
                options.reconnect = .disabled
            }
            device.simulateNetworkDrop()

            let will = try #require(try await watcher.nextMessage())
            #expect(will.topic == "wills/device")
            #expect(will.payload == [0xDE, 0xAD])
            #expect(await eventually { !device.isConnected })

            // A clean disconnect publishes no will.
            let polite = try await broker.connectedClient("will-polite") { $0.will = .init(topic: "wills/polite", payload: [1]) }
            await polite.disconnect()
            try await device.connect()  // connect again after the drop
            device.simulateNetworkDrop()
            let second = try #require(try await watcher.nextMessage())
            #expect(second.topic == "wills/device")
            await watcher.disconnect()
        }
    }

    @Test("after the broker is killed and restarted, the client reconnects and re-subscribes")
    func reconnectAndResubscribe() async throws {
        try await withBroker { broker in
            let subscriber = try await broker.connectedClient("re-sub") {
                $0.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maxDelay: .milliseconds(300))
            }
            try await subscriber.subscribe("re/+", qos: .atLeastOnce)

            broker.kill()
            #expect(await eventually { !subscriber.isConnected })
            // Publishes issued during the outage wait for the connection and then go out.
            async let parkedQoS0: Void = subscriber.publish(topic: "re/parked0", payload: [0], qos: .atMostOnce)
            async let parkedQoS1: Void = subscriber.publish(topic: "re/parked1", payload: [1], qos: .atLeastOnce)
            try await broker.start()
            #expect(await eventually { subscriber.isConnected })
            try await parkedQoS0
            try await parkedQoS1
            // They were sent after the re-subscription, so they come back to us.
            var parkedTopics: Set<String> = []
            for _ in 0..<2 {
                parkedTopics.insert(try #require(try await subscriber.nextMessage()).topic)
            }
            #expect(parkedTopics == ["re/parked0", "re/parked1"])

            // persistence is off: the broker forgot the subscription, the client re-sent it.
            let publisher = try await broker.connectedClient("re-pub")
            try await publisher.publish(topic: "re/1", payload: Array("after restart".utf8), qos: .atLeastOnce)
            let message = try #require(try await subscriber.nextMessage())
            #expect(message.topic == "re/1")
            #expect(message.payload == Array("after restart".utf8))

            await subscriber.disconnect()
            var events: [ConnectionEvent] = []
            for await event in subscriber.connectionEvents {
                events.append(event)
            }
            #expect(events.count == 4)
            guard events.count == 4 else { return }
            guard case .connected = events[0], case .disconnected(let lost?) = events[1],
                case .connected = events[2], case .disconnected(nil) = events[3]
            else {
                Issue.record("unexpected events \(events)")
                return
            }
            #expect(lost.isNotConnected)
            await publisher.disconnect()
        }
    }

    @Test("QoS 1 messages in flight when the connection drops are re-sent after reconnecting")
    func qos1SurvivesDrop() async throws {
        try await withBroker { broker in
            let subscriber = try await broker.connectedClient("drop-sub", subscribedTo: "drop/data")
            let publisher = try await broker.connectedClient("drop-pub") {
                $0.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maxDelay: .milliseconds(200))
            }

            let total = 300
            for index in 0..<(total - 1) {
                publisher.publishNoWait(topic: "drop/data", payload: Self.encode(index), qos: .atLeastOnce)
            }
            publisher.simulateNetworkDrop()  // most PUBACKs are still outstanding
            try await publisher.publish(topic: "drop/data", payload: Self.encode(total - 1), qos: .atLeastOnce)
            #expect(publisher.failedPublishCount == 0)

            let messages = subscriber.messages
            let seen = try await withTimeout(.seconds(30)) {
                var seen = Set<Int>()
                for await message in messages {
                    seen.insert(Self.decode(message.payload))  // QoS 1 may duplicate
                    if seen.count == total { break }
                }
                return seen
            }
            #expect(seen?.count == total)
            await publisher.disconnect()
            await subscriber.disconnect()
        }
    }

    @Test("a cancelled message iterator returns nil and loses nothing")
    func iteratorCancellation() async throws {
        try await withBroker { broker in
            let client = try await broker.connectedClient("cancel", subscribedTo: "cancel/x")
            let messages = client.messages
            let waiting = Task {
                var iterator = messages.makeAsyncIterator()
                return await iterator.next()
            }
            waiting.cancel()
            #expect(await waiting.value == nil)

            try await client.publish(topic: "cancel/x", payload: [5], qos: .atLeastOnce)
            let message = try #require(try await client.nextMessage())
            #expect(message.payload == [5])
            await client.disconnect()
        }
    }

    @Test("a slow consumer bounds the inbox and still receives all 5000 QoS 1 messages in order")
    func slowConsumer() async throws {
        let total = 5000
        let capacity = 100
        // The broker must hold what the paused subscriber cannot take yet (default 1000).
        try await withBroker(config: ["max_queued_messages \(total * 2)"]) { broker in
            var options = broker.options(clientID: "slow-sub")
            options.inboxCapacity = capacity
            let subscriber = MosquittoClient(options: options, logger: testLogger)
            let publisher = MosquittoClient(options: broker.options(clientID: "slow-pub"), logger: testLogger)
            try await subscriber.connect()
            try await publisher.connect()
            try await subscriber.subscribe("slow/data", qos: .atLeastOnce)

            for index in 0..<(total - 1) {
                publisher.publishNoWait(topic: "slow/data", payload: Self.encode(index), qos: .atLeastOnce)
            }
            // PUBACKs arrive in order: once the last is acknowledged, the broker has all.
            try await publisher.publish(topic: "slow/data", payload: Self.encode(total - 1), qos: .atLeastOnce)
            #expect(publisher.failedPublishCount == 0)

            #expect(await eventually { subscriber.bufferedCount == capacity })
            #expect(subscriber.peakBufferedCount <= capacity)

            let messages = subscriber.messages
            let received = try await withTimeout(.seconds(120)) {
                var payloads: [Int] = []
                for await message in messages {
                    payloads.append(Self.decode(message.payload))
                    if payloads.count == total { break }
                }
                return payloads
            }
            let payloads = try #require(received)
            #expect(payloads.count == total)
            #expect(payloads == Array(0..<total))
            #expect(subscriber.peakBufferedCount <= capacity)

            await publisher.disconnect()
            await subscriber.disconnect()
        }
    }

    @Test("operations fail with typed errors when not connected, and messages end after disconnect")
    func notConnectedErrors() async throws {
        let client = MosquittoClient(options: .init(clientID: "idle", port: 1), logger: testLogger)
        let publishError = try await #require(throws: MosquittoError.self) {
            try await client.publish(topic: "x", payload: [1], qos: .atLeastOnce)
        }
        #expect(publishError.isNotConnected)
        await #expect(throws: MosquittoError.self) {
            try await client.subscribe("x")
        }

        var invalid = MosquittoOptions(clientID: "bad-keepalive", port: 1)
        invalid.keepAlive = 2
        let misconfigured = MosquittoClient(options: invalid, logger: testLogger)
        let configError = try await #require(throws: MosquittoError.self) {
            try await misconfigured.connect(timeout: .seconds(30))
        }
        #expect(configError.code == 3)  // MOSQ_ERR_INVAL, at once rather than after the timeout

        await client.disconnect()
        var iterator = client.messages.makeAsyncIterator()
        #expect(await iterator.next() == nil)
        await #expect(throws: MosquittoError.self) {
            try await client.connect(timeout: .seconds(1))
        }
    }

    static func encode(_ value: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt32(value).bigEndian) { Array($0) }
    }

    static func decode(_ bytes: [UInt8]) -> Int {
        Int(bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
    }
}
