import Mosquitto
import Testing

@Suite("MosquittoEventLoop", .timeLimit(.minutes(3)))
struct MosquittoEventLoopTests {
    @Test("200 clients on one event loop all receive a message")
    func manyClientsOneLoop() async throws {
        let count = 200
        let loop = MosquittoEventLoop(name: "test-200")
        defer { loop.shutdown() }
        try await withBroker { broker in
            let clients = (0..<count).map { index in
                MosquittoClient(options: broker.options(clientID: "fan-\(index)"), loop: loop, logger: testLogger)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in clients {
                    group.addTask {
                        try await client.connect(timeout: .seconds(30))
                        try await client.subscribe("fan/all", qos: .atLeastOnce)
                    }
                }
                try await group.waitForAll()
            }
            #expect(clients.filter(\.isConnected).count == count)

            let publisher = MosquittoClient(options: broker.options(clientID: "fan-pub"), loop: loop, logger: testLogger)
            try await publisher.connect()
            try await publisher.publish(topic: "fan/all", payload: Array("hello fleet".utf8), qos: .atLeastOnce)

            let received = try await withThrowingTaskGroup(of: Bool.self) { group in
                for client in clients {
                    group.addTask {
                        let message = try await client.nextMessage(timeout: .seconds(30))
                        return message?.payload == Array("hello fleet".utf8)
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(received == count)

            await withTaskGroup(of: Void.self) { group in
                for client in clients + [publisher] {
                    group.addTask { await client.disconnect() }
                }
            }
        }
    }

    @Test("clients are spread over several loops and shutdown closes them")
    func shutdownClosesClients() async throws {
        try await withBroker { broker in
            let loops = (0..<3).map { MosquittoEventLoop(name: "test-loop-\($0)") }
            let clients = (0..<9).map { index in
                MosquittoClient(
                    options: broker.options(clientID: "multi-\(index)"), loop: loops[index % loops.count],
                    logger: testLogger)
            }
            for client in clients {
                try await client.connect()
                try await client.subscribe("multi/+")
            }
            try await clients[0].publish(topic: "multi/x", payload: [7], qos: .atLeastOnce)
            for client in clients {
                let message = try #require(try await client.nextMessage())
                #expect(message.payload == [7])
            }

            for loop in loops {
                loop.shutdown()
            }
            #expect(clients.filter(\.isConnected).isEmpty)
            for client in clients {
                var iterator = client.messages.makeAsyncIterator()
                #expect(await iterator.next() == nil)
                await #expect(throws: MosquittoError.self) {
                    try await client.publish(topic: "multi/y", payload: [1], qos: .atMostOnce)
                }
            }
        }
    }
}
