import CoAP
import Foundation
import Mosquitto
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport
import UpdraftWire

/// The README "Attacks" rows of issue 10 item 8 that no other suite measures: forged and
/// replayed progress, CoAP cross-device requests, a replayed genuine offer.
@Suite(.timeLimit(.minutes(3))) struct AttackTests {
    static let announce10 = #"{"product":"thermo","version":"1.0"}"#
    static let announce20 = #"{"product":"thermo","version":"2.0"}"#
    static let pastDownload = ["downloaded", "verified", "installing", "installed"]

    static func transitions(_ h: Harness, of job: JobID) async throws -> [JobState] {
        try await h.ops.store.events(after: 0, limit: 10_000).filter { $0.jobID == job && $0.kind == .jobTransition }.compactMap(\.to)
    }

    /// The job went no further than the gateway's own offer.
    static func expectUntouched(_ h: Harness, _ job: JobID) async throws {
        let moves = try await transitions(h, of: job)
        #expect(moves.allSatisfy { $0 == .notified }, "\(moves)")
        let state = try await h.ops.store.job(job)?.state
        #expect(state == .notified || state == .queued, "\(String(describing: state))")
    }

    /// A raw device that updated to 2.0 through job `old` (its genuine offer and reports
    /// kept), then was offered 3.0 in job `new`.
    struct History {
        let device: RawDevice
        let old: JobID
        let genuineOffer: [UInt8]
        let reports: [String]
        let new: JobID
    }

    static func history(_ id: DeviceID, on h: Harness, retainAnnouncement: Bool = false) async throws -> History {
        let (first, _) = try await h.addFirmware(version: "2.0", size: 10_000)
        let (second, _) = try await h.addFirmware(version: "3.0", size: 10_000, seed: 2)
        let device = try await RawDevice.connect(id.rawValue, on: h)
        try await device.send("announce", announce10)
        try await h.waitUntilRegistered(1)
        let old = try await h.ops.createRelease(firmwareID: first.id, target: .devices([id]), allowDowngrade: false)
        let genuine = try #require(try await device.next("/job")).payload
        let reports = pastDownload.map { #"{"job":"\#(old.jobs[0].id)","state":"\#($0)"}"# }
        for report in reports { try await device.send("progress", report) }
        try await device.client.publish(
            topic: "updraft/d/\(id)/announce", payload: Array(announce20.utf8), qos: .atLeastOnce, retain: retainAnnouncement)
        _ = try await h.waitForAllSucceeded(old.release.id)
        let new = try await h.ops.createRelease(firmwareID: second.id, target: .devices([id]), allowDowngrade: false)
        #expect(try await device.next("/job") != nil)
        return History(device: device, old: old.jobs[0].id, genuineOffer: genuine, reports: reports, new: new.jobs[0].id)
    }

    /// With its own credentials a device publishes another device's progress (and
    /// announcement) on that device's topics: the broker's ACL drops them; naming the
    /// other's job on its own topic is answered `not_your_job`. The victim's job moves only
    /// as far as the gateway moved it (notified).
    @Test func progressForAnotherDeviceIsRecordedNowhere() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let victim = try await RawDevice.connect("fp-victim", on: h)
            defer { Task { await victim.close() } }
            let forger = try await RawDevice.connect("fp-forger", on: h)
            defer { Task { await forger.close() } }
            for device in [victim, forger] { try await device.send("announce", Self.announce10) }
            try await h.waitUntilRegistered(2)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["fp-victim"]), allowDowngrade: false)
            let job = plan.jobs[0].id
            #expect(try await victim.next("/job") != nil)
            for state in Self.pastDownload {
                try? await forger.client.publish(
                    topic: "updraft/d/fp-victim/progress", payload: Array(#"{"job":"\#(job)","state":"\#(state)"}"#.utf8),
                    qos: .atLeastOnce, retain: false)
            }
            try? await forger.client.publish(
                topic: "updraft/d/fp-victim/announce", payload: Array(#"{"product":"thermo","version":"2.0"}"#.utf8), qos: .atLeastOnce,
                retain: true)
            try await forger.send("progress", #"{"job":"\#(job)","state":"downloaded"}"#)
            #expect(try await forger.nextError()?.code == "not_your_job")
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await Self.transitions(h, of: job) == [.notified])
            #expect(try await h.ops.store.job(job)?.state == .notified)
            #expect(try await h.ops.store.device("fp-victim")?.version == "1.0")
        }
    }

    /// A device's own genuine reports of a finished job, replayed (again, and retained so
    /// that the broker hands them to the restarted gateway) while a new job is open: they
    /// name the old job and move nothing; a replayed old announcement does not complete
    /// the new job either.
    @Test func replayedProgressDoesNotAdvanceANewJob() async throws {
        try await Harness.with { h in
            let history = try await Self.history("rp-1", on: h, retainAnnouncement: true)
            let device = history.device
            defer { Task { await device.close() } }
            for report in history.reports { try await device.send("progress", report) }
            #expect(try await device.nextError()?.code == "unknown_job")
            try await device.client.publish(
                topic: "updraft/d/rp-1/progress", payload: Array(history.reports[3].utf8), qos: .atLeastOnce, retain: true)
            try await device.send("announce", Self.announce20)
            // The restarted gateway gets the retained report and announcement from the broker.
            await h.stack.stopGateway()
            try await h.stack.startGateway()
            try await Task.sleep(for: .seconds(1))
            try await Self.expectUntouched(h, history.new)
            #expect(try await h.ops.store.job(history.old)?.state == .succeeded)
        }
    }

    /// CoAP over DTLS with device A's own valid key, asking for device B's job, image and
    /// reporting B's progress: 4.03 each, and B's job does not move.
    @Test func coapCrossDeviceRequestsAreRefusedAndRecordNothing() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 4_000)
            let devices = try await CoAPDevices(["cx-a", "cx-b"], on: h)
            defer { devices.client.shutdown() }
            let a = devices.sessions["cx-a"]!
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["cx-b"]), allowDowngrade: false)
            let job = plan.jobs[0].id
            let download = try await devices.offer(of: "cx-b")
            #expect(try await a.get("job/cx-b").code == .forbidden)
            #expect(try await a.get("job/cx-b", query: ["d=cx-b"]).code == .forbidden)
            #expect(try await a.get(download).code == .forbidden)
            let bodies = [#"{"job":"\#(job)","state":"downloading","percent":50}"#] + Self.pastDownload.map { #"{"job":"\#(job)","state":"\#($0)"}"# }
            for body in bodies {
                let report = try await a.post("progress", payload: Array(body.utf8), contentFormat: .json)
                #expect(report.code == .forbidden, "\(body): \(report.code) \(String(decoding: report.payload, as: UTF8.self))")
                let claimed = try await a.post("progress", payload: Array(body.utf8), contentFormat: .json, query: ["d=cx-b"])
                #expect(claimed.code == .forbidden, "?d=cx-b \(body): \(claimed.code)")
                #expect(report.code == .forbidden, "\(body): \(report.code) \(String(decoding: report.payload, as: UTF8.self))")
            }
            try await Self.expectUntouched(h, job)
        }
    }

    /// A genuine offer of an older job (signed, once really sent), published retained on a
    /// device's job topic: the device itself, another device and the events account cannot
    /// write that topic (the device's next session finds nothing retained). Only the
    /// gateway's account can; what is left with a leaked gateway password: the device
    /// fetches the old job and is answered `unknown_job`, nothing is recorded for it, and
    /// the current job is untouched.
    @Test func aReplayedGenuineOfferOnlyTheGatewayCanWriteAndItMovesNothing() async throws {
        try await Harness.with { h in
            let history = try await Self.history("ro-1", on: h)
            let genuine = history.genuineOffer
            await history.device.close()

            let other = try await RawDevice.connect("ro-other", on: h, subscribe: [])
            defer { Task { await other.close() } }
            let events = try h.ops.serviceAccounts().events
            var options = h.stack.brokerOptions(clientID: events.username)
            (options.username, options.password) = (events.username, events.password)
            let eventsLoop = MosquittoEventLoop(name: "events-writer")
            defer { eventsLoop.shutdown() }
            let eventsClient = MosquittoClient(options: options, loop: eventsLoop, logger: Harness.logger)
            try await eventsClient.connect()
            let itself = try await RawDevice.connect("ro-1", on: h, subscribe: [])
            for writer in [itself.client, other.client, eventsClient] {
                try? await writer.publish(topic: "updraft/d/ro-1/job", payload: genuine, qos: .atLeastOnce, retain: true)
            }
            await itself.close()
            await eventsClient.disconnect()
            // The device's next session: nothing retained on its job topic.
            let next = try await RawDevice.connect("ro-1", on: h)
            #expect(try await next.next("/job", timeout: .seconds(1)) == nil)

            // With the gateway's password (leaked; its client id is the gateway's, so it would
            // replace the gateway's connection: sent while the gateway is away): delivered,
            // and it moves nothing.
            await h.stack.stopGateway()
            let gateway = try h.ops.serviceAccounts().gateway
            var gatewayOptions = h.stack.brokerOptions(clientID: "replayer")
            (gatewayOptions.username, gatewayOptions.password) = (gateway.username, gateway.password)
            let gatewayLoop = MosquittoEventLoop(name: "replayer")
            defer { gatewayLoop.shutdown() }
            let replayer = MosquittoClient(options: gatewayOptions, loop: gatewayLoop, logger: Harness.logger)
            _ = try? await replayer.connect()
            try? await replayer.publish(topic: "updraft/d/ro-1/job", payload: genuine, qos: .atLeastOnce, retain: false)
            await replayer.disconnect()
            try await h.stack.startGateway()
            let replayed = try #require(try await next.next("/job"), "the gateway's account can write the job topic")
            #expect(replayed.payload == genuine)
            try await next.send("download", #"{"job":"\#(history.old)","offset":0,"count":1,"size":1024}"#)
            let refusal = try await next.nextError()
            #expect(refusal?.code == "unknown_job", "\(String(describing: refusal))")
            try await next.send("progress", #"{"job":"\#(history.old)","state":"downloading","percent":10}"#)
            #expect(try await next.nextError()?.code == "unknown_job")
            #expect(try await h.ops.store.job(history.old)?.state == .succeeded)
            try await Self.expectUntouched(h, history.new)
            await next.close()
        }
    }
}
