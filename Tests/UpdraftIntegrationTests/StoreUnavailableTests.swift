import Foundation
import Testing
import UpdraftCore
import UpdraftMQTT
import UpdraftTestSupport

@testable import UpdraftStore
import UpdraftWire

/// The gateway's store file stops growing (SQLite's max_page_count on the gateway's own
/// connection: a full disk, for real, without root). A device's report is answered
/// `unavailable` and not applied; sent again once the store can be written, it lands.
@Suite(.timeLimit(.minutes(3))) struct StoreUnavailableTests {
    @Test func aReportIsAnsweredUnavailableWhileTheStoreCannotBeWrittenAndLandsWhenSentAgain() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let device = try await RawDevice.connect("full-1", on: h)
            let filler = try await RawDevice.connect("filler-1", on: h, subscribe: [])
            defer {
                Task {
                    await device.close()
                    await filler.close()
                }
            }
            try await device.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            try await h.waitUntilRegistered(1)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["full-1"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first).id
            #expect(try await device.next("/job") != nil)
            try await device.send("progress", #"{"job":"\#(job)","state":"downloading","percent":1}"#)
            try await h.waitForJobs(plan.release.id) { $0.first?.progress == 1 }

            let store = try #require(h.stack.gateway?.store as? SQLiteStatusStore)
            try await store.capSizeForTesting(true)
            // Another device's announcements fill the last pages until a write fails; the
            // device's next report is then refused instead of kept in memory.
            var refusal: ErrorReply?
            var percent = 1
            while refusal == nil, percent < 90 {
                for version in 0..<20 {
                    try await filler.send("announce", #"{"product":"other","version":"1.\#(percent).\#(version)"}"#)
                }
                percent += 1
                try await device.send("progress", #"{"job":"\#(job)","state":"downloading","percent":\#(percent)}"#)
                if let message = try await device.next("/error", timeout: .milliseconds(300)) {
                    let reply = try JSONDecoder().decode(ErrorReply.self, from: Data(message.payload))
                    if reply.code == "unavailable" { refusal = reply }
                }
            }
            let reply = try #require(refusal, "no report was answered unavailable")
            #expect(reply.job == job)
            #expect(reply.state == "downloading")
            let refusedPercent = percent
            #expect(try await h.ops.store.job(job)?.progress ?? 0 < refusedPercent)

            try await store.capSizeForTesting(false)
            try await eventually(timeout: .seconds(10), "the gateway to write again") { await h.stack.gateway?.engine.storeWritable == true }
            try await device.send("progress", #"{"job":"\#(job)","state":"downloading","percent":\#(refusedPercent)}"#)
            try await h.waitForJobs(plan.release.id) { $0.first?.progress == refusedPercent }
        }
    }
}
