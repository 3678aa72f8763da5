import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftMQTT
import UpdraftWire
import UpdraftTestSupport

/// A device that declines updates keeps its job pending, can ask what is pending, and
/// gets the offer once it accepts — over MQTT and over CoAP.
@Suite(.timeLimit(.minutes(3))) struct ConsentTests {
    @Test func mqttDeviceAsksWhatIsPendingThenAccepts() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 4_000)
            let device = try await RawDevice.connect(
                "busy-1", on: h,
                subscribe: ["updraft/d/busy-1/job", "updraft/d/busy-1/pending", "updraft/d/busy-1/error"])
            defer { Task { await device.close() } }
            try await device.send("announce", #"{"product":"thermo","version":"1.0","accepts_updates":false}"#)
            try await h.waitUntilRegistered(1)
            try await device.send("query", "")
            let nothing = try #require(try await device.next("/pending"))
            #expect(try JSONDecoder().decode(PendingBody.self, from: Data(nothing.payload)).pending == false)

            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["busy-1"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first)
            // Declined: no offer, but the query shows the job.
            #expect(try await device.next("/job", timeout: .seconds(1)) == nil)
            var answer: PendingBody?
            try await eventually("the pending job") {
                try await device.send("query", "")
                guard let message = try await device.next("/pending", timeout: .seconds(2)) else { return false }
                answer = try JSONDecoder().decode(PendingBody.self, from: Data(message.payload))
                return answer?.pending == true
            }
            #expect(answer?.job == job.id)
            #expect(answer?.firmware == firmware.id)

            try await device.send("announce", #"{"product":"thermo","version":"1.0","accepts_updates":true}"#)
            let offer = try #require(try await device.next("/job"))
            #expect(try UpdraftDialectV1().decodeOffer(offer.payload).job == job.id)
        }
    }

    @Test func coapDeviceAsksWhatIsPendingThenAccepts() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let port = h.stack.configuration.coap.port
            let base = "coap://127.0.0.1:\(port)"
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 4_000)
            let declined = try await tool.run(
                ["-m", "post", "-e", #"{"product":"thermo","version":"1.0","accepts_updates":false}"#], uri: "\(base)/announce?d=busy-2")
            #expect(declined.text == "{}")
            try await h.waitUntilRegistered(1)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["busy-2"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first)
            var answer: PendingBody?
            try await eventually("the pending job") {
                let got = try await tool.run([], uri: "\(base)/pending?d=busy-2")
                answer = try? JSONDecoder().decode(PendingBody.self, from: Data(got.body))
                return answer?.pending == true
            }
            #expect(answer?.job == job.id)
            #expect(try await tool.run([], uri: "\(base)/job/busy-2?d=busy-2").text == "{}")

            let accepted = try await tool.run(
                ["-m", "post", "-e", #"{"product":"thermo","version":"1.0","accepts_updates":true}"#], uri: "\(base)/announce?d=busy-2")
            let offer = try JSONDecoder().decode(JobOffer.self, from: Data(accepted.body))
            #expect(offer.job == job.id)
        }
    }
}
