import Foundation
import Logging
import Mosquitto
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftMQTT
import UpdraftWire
import UpdraftTestSupport

/// A hand-driven device: a raw MQTT client that sends whatever bytes a test wants.
struct RawDevice {
    let id: String
    let client: MosquittoClient
    let loop: MosquittoEventLoop

    /// Provisions `id` on the harness's broker (once) and connects with its password.
    /// - Parameter clientID: another connection of the same device (same username) when set.
    static func connect(_ id: String, clientID: String? = nil, on h: Harness, subscribe: [String]? = nil) async throws -> RawDevice {
        let password = try await h.stack.devicePassword(DeviceID(validating: id))
        return try await connect(id, broker: h.stack.brokerOptions(clientID: clientID ?? id), password: password, subscribe: subscribe)
    }

    /// - Parameter broker: where to connect (host, port, TLS) and the client id.
    static func connect(
        _ id: String, broker: MosquittoOptions, password: String?, subscribe: [String]? = nil
    ) async throws -> RawDevice {
        let loop = MosquittoEventLoop(name: "raw-\(broker.clientID)")
        var options = broker
        options.username = id
        options.password = password
        let client = MosquittoClient(options: options, loop: loop, logger: Harness.logger)
        try await client.connect()
        for filter in subscribe ?? ["updraft/d/\(id)/error", "updraft/d/\(id)/job", "updraft/d/\(id)/chunk/#"] {
            try await client.subscribe(filter, qos: .atLeastOnce)
        }
        return RawDevice(id: id, client: client, loop: loop)
    }

    func send(_ kind: String, _ text: String) async throws {
        try await send(kind, Array(text.utf8))
    }

    func send(_ kind: String, _ bytes: [UInt8]) async throws {
        try await client.publish(topic: "updraft/d/\(id)/\(kind)", payload: bytes, qos: .atLeastOnce, retain: false)
    }

    /// The next message on `topicSuffix` within the timeout.
    func next(_ topicSuffix: String, timeout: Duration = .seconds(10)) async throws -> MosquittoMessage? {
        try await withThrowingTaskGroup(of: MosquittoMessage?.self) { group in
            group.addTask {
                for await message in client.messages where message.topic.hasSuffix(topicSuffix) { return message }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    func nextError(timeout: Duration = .seconds(10)) async throws -> ErrorReply? {
        guard let message = try await next("/error", timeout: timeout) else { return nil }
        return try JSONDecoder().decode(ErrorReply.self, from: Data(message.payload))
    }

    func close() async {
        await client.disconnect()
        loop.shutdown()
    }
}

@Suite(.timeLimit(.minutes(3))) struct HostileInputTests {
    @Test func malformedAndHostilePayloadsGetErrorsAndCrashNothing() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let evil = try await RawDevice.connect("evil-1", on: h)
            defer { Task { await evil.close() } }

            let cases: [(String, [UInt8], String)] = [
                ("announce", Array("not json".utf8), "malformed_announce"),
                ("announce", Array(#"{"product":"a b","version":"1"}"#.utf8), "malformed_announce"),
                ("announce", Array(repeating: 0x7B, count: 10_000), "payload_too_large"),
                ("presence", Array("sideways".utf8), "malformed_presence"),
                ("progress", Array(#"{"job":"jnothere","state":"verified"}"#.utf8), "unknown_job"),
                ("progress", Array(#"{"job":"j1","state":"downloading","percent":-5}"#.utf8), "malformed_progress"),
                ("download", Array(#"{"job":"jnothere","offset":0,"count":4,"size":1024}"#.utf8), "unknown_job"),
                ("download", [0xFF, 0xFE, 0x00, 0x01], "malformed_download"),
            ]
            for (kind, payload, code) in cases {
                try await evil.send(kind, payload)
                let reply = try await evil.nextError()
                #expect(reply?.code == code, "\(kind) \(payload.prefix(20)) -> \(String(describing: reply))")
                #expect(reply.map { !$0.message.isEmpty } ?? false)
            }

            // Give the hostile device a real job, then ask for impossible windows.
            try await evil.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["evil-1"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first).id
            let offer = try #require(try await evil.next("/job"))
            #expect(try UpdraftDialectV1().decodeOffer(offer.payload).job == job)
            let windows: [(String, String)] = [
                (#"{"job":"\#(job)","offset":10000,"count":1,"size":1024}"#, "offset_out_of_range"),
                (#"{"job":"\#(job)","offset":-1,"count":1,"size":1024}"#, "offset_out_of_range"),
                (#"{"job":"\#(job)","offset":0,"count":1,"size":16}"#, "chunk_size_out_of_bounds"),
                (#"{"job":"\#(job)","offset":0,"count":1,"size":1048576}"#, "chunk_size_out_of_bounds"),
                (#"{"job":"\#(job)","offset":0,"count":100000,"size":1024}"#, "chunk_count_out_of_bounds"),
            ]
            for (request, code) in windows {
                try await evil.send("download", request)
                #expect(try await evil.nextError()?.code == code, "\(request)")
            }
            // Out-of-order progress is refused and recorded, and the job is untouched.
            try await evil.send("progress", #"{"job":"\#(job)","state":"installed"}"#)
            #expect(try await evil.nextError()?.code == "transition_refused")
            // Written by the next batched flush, a few milliseconds after the reply.
            try await eventually(timeout: .seconds(10), "the refusal in the event log") {
                try await h.ops.store.events(after: 0, limit: 10_000).contains { $0.kind == .jobRefused && $0.jobID == job }
            }
            let refused = try await h.ops.store.events(after: 0, limit: 10_000).filter { $0.kind == .jobRefused && $0.jobID == job }
            #expect(refused.count == 1)
            // A valid window still works: exactly the bytes asked for.
            try await evil.send("download", #"{"job":"\#(job)","offset":9000,"count":4,"size":512}"#)
            let chunk = try #require(try await evil.next("/chunk/\(job)/9000"))
            #expect(chunk.payload.count == 512)

            // The gateway is alive and well for everybody else.
            let fleet = try await h.fleet(3, prefix: "good-")
            try await h.start(fleet, online: 3)
            let good = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(fleet.devices.map(\.id)), allowDowngrade: false)
            try await h.waitForAllSucceeded(good.release.id)
            await fleet.stop()
            #expect((h.stack.gateway?.mqtt.counters["rejected.malformed_announce"] ?? 0) >= 2)
        }
    }

    @Test func theBrokerACLKeepsDevicesToTheirOwnTopics() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let spy = try await RawDevice.connect("spy-1", on: h, subscribe: ["updraft/events", "updraft/d/victim-1/#"])
            defer { Task { await spy.close() } }
            let victim = try await RawDevice.connect("victim-1", on: h)
            defer { Task { await victim.close() } }
            try await victim.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            // The spy tries to speak for the victim: the broker drops it.
            try await spy.client.publish(topic: "updraft/d/victim-1/announce", payload: Array(#"{"product":"thermo","version":"2.0"}"#.utf8), qos: .atLeastOnce, retain: false)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["victim-1"]), allowDowngrade: false)
            #expect(try await victim.next("/job") != nil)
            // Neither the victim's offer nor the event stream reached the spy.
            #expect(try await spy.next("", timeout: .seconds(1)) == nil)
            let victimDevice = try await h.ops.store.device("victim-1")
            #expect(victimDevice?.version == "1.0")
            #expect(plan.jobs.count == 1)
        }
    }
}
