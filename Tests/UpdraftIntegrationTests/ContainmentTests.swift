import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftMQTT
import UpdraftWire
import UpdraftTestSupport

/// One device cannot exhaust the gateway: its window credit and its event budget.
@Suite(.timeLimit(.minutes(3))) struct ContainmentTests {
    /// Each hostile device here reads its errors on a second connection, under another
    /// client id: the password file binds a client id to its username, so these run on an
    /// anonymous broker (what they measure is the gateway's limits, not who connects).
    static func anonymous(_ c: inout UpdraftConfiguration) { c.mqtt.broker.authentication = .none }

    @Test func aHostileDevicesExcessWindowsAreRefusedAndAWellBehavedDeviceBesideItFinishes() async throws {
        try await Harness.with(tune: Self.anonymous) { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 1 << 20)
            // The hog takes its chunks and never reads them; its errors come on a second connection.
            let hog = try await RawDevice.connect("hog-1", on: h, subscribe: ["updraft/d/hog-1/job", "updraft/d/hog-1/chunk/#"])
            let errors = try await RawDevice.connect("hog-1", clientID: "hog-1-errors", on: h, subscribe: ["updraft/d/hog-1/error"])
            try await hog.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            try await h.waitUntilRegistered(1)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["hog-1"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first).id
            #expect(try await hog.next("/job") != nil)

            // Whole-image windows (16 x 64 KiB), asked for over and over while a calm device updates.
            let window = Array(#"{"job":"\#(job)","offset":0,"count":16,"size":65536}"#.utf8)
            let flooding = Task {
                while !Task.isCancelled {
                    for _ in 0..<20 { hog.client.publishNoWait(topic: "updraft/d/hog-1/download", payload: window, qos: .atLeastOnce) }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            let refusal = try #require(try await errors.nextError())
            // Its credit (windows not yet written) or its allowance (twice the image per job
            // at once) runs out first, depending on how fast its windows are written.
            #expect(["too_many_windows", "download_allowance"].contains(refusal.code))
            #expect(refusal.job == job && refusal.offset == 0)
            #expect(!refusal.message.isEmpty)

            let fleet = try await h.fleet(1, prefix: "calm-")
            fleet.start()
            try await h.waitUntilRegistered(2)
            let calm = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(fleet.devices.map(\.id)), allowDowngrade: false)
            try await h.waitForAllSucceeded(calm.release.id)
            flooding.cancel()
            await fleet.stop()
            await hog.close()
            await errors.close()
            let counters = try #require(h.stack.gateway?.mqtt.counters)
            #expect(counters["rejected.too_many_windows"] + counters["rejected.download_allowance"] > 0)
        }
    }

    @Test func aDeviceFloodingTheLogIsRateLimitedWhileAnotherDevicesProgressIsAllRecorded() async throws {
        try await Harness.with(tune: Self.anonymous) { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            // Errors on a second connection: the flooding one must keep reading its PUBACKs.
            let flood = try await RawDevice.connect("flood-1", on: h, subscribe: [])
            let errors = try await RawDevice.connect("flood-1", clientID: "flood-1-errors", on: h, subscribe: ["updraft/d/flood-1/error"])
            let legit = try await RawDevice.connect("legit-1", on: h)
            try await legit.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            try await h.waitUntilRegistered(1)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["legit-1"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first).id
            #expect(try await legit.next("/job") != nil)
            let before = try await h.ops.store.lastEventSequence()

            // 2,000 reports for a job that does not exist and 2,000 announcements of new versions,
            // beside 100 accepted progress reports (more than the budget) of another device.
            let flooding = Task {
                for i in 0..<2_000 {
                    try await flood.send("progress", #"{"job":"jnothere","state":"verified"}"#)
                    try await flood.send("announce", #"{"product":"thermo","version":"1.\#(i)"}"#)
                }
            }
            for percent in 1...100 {
                try await legit.send("progress", #"{"job":"\#(job)","state":"downloading","percent":\#(percent)}"#)
            }
            try await flooding.value
            var codes: Set<String> = []
            while !codes.contains("rate_limited"), let reply = try await errors.nextError(timeout: .seconds(10)) { codes.insert(reply.code) }
            #expect(codes.contains("rate_limited"), "\(codes)")

            let store = h.ops.store
            try await eventually(timeout: .seconds(30), "the legitimate progress in the event log") {
                let events = try await store.events(after: before, limit: 100_000)
                return events.contains { $0.jobID == job && $0.progress == 100 }
            }
            let events = try await store.events(after: before, limit: 100_000)
            let fromFlood = events.filter { $0.deviceID == "flood-1" }
            #expect(fromFlood.count <= 40, "\(fromFlood.count) events from 4,000 flood messages")
            let progress = events.filter { $0.jobID == job && $0.kind == .jobTransition }.compactMap(\.progress).filter { $0 > 0 }
            #expect(progress == Array(1...100), "every accepted report of the other device is recorded")
            #expect(try await legit.next("/error", timeout: .milliseconds(500)) == nil)
            await flood.close()
            await errors.close()
            await legit.close()
        }
    }

    @Test func aCoAPDeviceBeyondItsEventBudgetGets429AndIsNotRecorded() async throws {
        try await Harness.with(tune: { $0.deviceEventsPerMinute = 3 }) { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let uri = "coap://127.0.0.1:\(h.stack.configuration.coap.port)/announce?d=chatter-1"
            var logs: [String] = []
            for minor in 0..<5 {
                let outcome = try await tool.run(
                    ["-m", "post", "-t", "json", "-e", #"{"product":"thermo","version":"1.\#(minor)"}"#], uri: uri)
                logs.append(outcome.log + outcome.text)
            }
            #expect(logs.prefix(3).allSatisfy { !$0.contains("4.29") }, "\(logs)")
            #expect(logs.suffix(2).allSatisfy { $0.contains("4.29") && $0.contains("rate_limited") }, "\(logs)")
            // The ignored announcements changed nothing.
            try await eventually(timeout: .seconds(10), "the third announcement in the registry") {
                try await h.ops.store.device("chatter-1")?.version == "1.2"
            }
            let announced = try await h.ops.store.events(after: 0, limit: 10_000).filter { $0.deviceID == "chatter-1" && $0.kind == .deviceAnnounced }
            #expect(announced.count == 3)
        }
    }
}
