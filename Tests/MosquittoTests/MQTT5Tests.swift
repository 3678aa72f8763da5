import Mosquitto
import Testing

@Suite("MosquittoClient speaking MQTT 5 to a real broker", .timeLimit(.minutes(2)))
struct MQTT5Tests {
    /// MQTT 5 refusals are checked in MosquittoClientTests.refusedCredentials.
    func options(_ broker: TestBroker, _ clientID: String) -> MosquittoOptions {
        var options = broker.options(clientID: clientID)
        options.protocolVersion = .v5
        return options
    }

    @Test("connect, subscribe, publish at QoS 0 and 1, receive: the round trip works over MQTT 5")
    func roundTrip() async throws {
        let broker = try TestBroker()
        try await broker.start()
        defer { broker.stop() }
        let subscriber = MosquittoClient(options: options(broker, "v5-sub"), logger: testLogger)
        let publisher = MosquittoClient(options: options(broker, "v5-pub"), logger: testLogger)
        try await subscriber.connect()
        try await publisher.connect()
        try await subscriber.subscribe("v5/#", qos: .atLeastOnce)
        for (topic, payload, qos) in [("v5/a", [1, 2, 3] as [UInt8], QoS.atMostOnce), ("v5/b", [], .atLeastOnce)] {
            try await publisher.publish(topic: topic, payload: payload, qos: qos)
            let received = try #require(try await subscriber.nextMessage())
            #expect(received.topic == topic)
            #expect(received.payload == payload)
            #expect(received.qos == qos)
        }
        try await subscriber.unsubscribe("v5/#")
        await publisher.disconnect()
        await subscriber.disconnect()
        // The broker flushes its log when it stops; it names the protocol of each client.
        broker.stop()
        #expect(try broker.connectedWithMQTT5(clientID: "v5-sub"))
    }
}

extension TestBroker {
    /// mosquitto logs "New client connected ... as <id> (p5, ...)" for an MQTT 5 client.
    func connectedWithMQTT5(clientID: String) throws -> Bool {
        let log = try String(contentsOf: logFile, encoding: .utf8)
        return log.split(separator: "\n").contains { $0.contains(clientID) && $0.contains("(p5,") }
    }
}
