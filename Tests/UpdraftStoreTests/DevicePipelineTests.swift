import Foundation
import Testing
import UpdraftAdapter
import UpdraftCore

@testable import UpdraftStore

/// Image bytes from memory, or the error a test wants.
struct FixedImages: FirmwareImageSource {
    var failure: (any Error)?
    func image(for firmware: Firmware) throws -> [UInt8] {
        if let failure { throw failure }
        return Array(repeating: 7, count: Int(firmware.size))
    }
}

struct ReadFailure: Error {}

/// The request steps every adapter shares, over the real engine and SQLite store.
@Suite("DevicePipeline")
struct DevicePipelineTests {
    struct Setup {
        let f: EngineFixture
        let adapter = RecordingAdapter(.coap)
        let pipeline: DevicePipeline

        init(_ f: EngineFixture, images: FixedImages = FixedImages()) {
            self.f = f
            let router = DeviceCommandRouter(logger: testLogger)
            pipeline = DevicePipeline(transport: .coap, engine: f.engine, router: router, images: images, logger: testLogger)
            pipeline.serve(adapter)
        }

        /// An operator's job for `device`, taken over by the engine; its commands delivered.
        func operatorJob(for device: DeviceID) async throws -> Job {
            let plan = try await f.store.createRelease(
                Release(firmwareID: f.target.id, target: .devices([device]), createdAt: f.clock.now), firmware: f.target)
            let job = try #require(plan.jobs.first)
            pipeline.router.deliver(try await f.engine.jobCreated(job.id))
            return job
        }
    }

    @Test func engineCommandsReachTheAdapterBeforeTheCallReturns() async throws {
        try await FleetEngineFixture.with { f in
            let s = Setup(f)
            #expect(await s.pipeline.announced("d1", Announcement(product: "p", version: "1")) == nil)
            #expect(s.adapter.commands.isEmpty)
            let job = try await s.operatorJob(for: "d1")
            #expect(s.adapter.commands.offers(to: "d1") == [job.id], "d1 spoke CoAP: its offer goes to the CoAP adapter")
            #expect(await s.pipeline.report("d1", job: job.id, .failed(.download, detail: "no space")) == nil)
            #expect(s.adapter.commands.withdrawals(from: "d1") == [job.id])
            #expect(s.pipeline.counters.snapshot.isEmpty, "nothing refused")
        }
    }

    @Test func refusalsComeBackCountedByCode() async throws {
        try await FleetEngineFixture.with { f in
            let s = Setup(f)
            let refusal = await s.pipeline.report("d1", job: "jnobodyhasthis", .downloaded)
            #expect(refusal?.code == "unknown_job")
            #expect(s.pipeline.counters["rejected.unknown_job"] == 1)

            #expect(throws: Never.self) { try s.pipeline.identify("d1").get() }
            let bad = s.pipeline.identify("not a device/id")
            #expect((try? bad.get()) == nil)
            #expect(s.pipeline.counters["rejected.bad_device_id"] == 1)

            let decoded: Result<AnnounceBodyProbe, UpdraftError> = s.pipeline.decode(Array("{".utf8), "announce", example: "{}")
            guard case .failure(let malformed) = decoded else { Issue.record("decoded a broken body"); return }
            #expect(malformed.code == "malformed_announce")
            s.pipeline.refuse(malformed, device: "d1")
            #expect(s.pipeline.counters["rejected.malformed_announce"] == 1)
        }
    }

    @Test func aDownloadIsAuthorisedByTheEngineAndServedFromTheImageSource() async throws {
        try await FleetEngineFixture.with { f in
            let s = Setup(f)
            await s.pipeline.announced("d1", Announcement(product: "p", version: "1"))
            let job = try await s.operatorJob(for: "d1")
            let download = try await s.pipeline.download("d1", job: job.id).get()
            #expect(download.firmware.id == f.target.id)
            #expect(download.image.count == Int(f.target.size))

            let foreign = await s.pipeline.download("d2", job: job.id)
            #expect(foreign.failureCode == "unknown_job")
            #expect(s.pipeline.counters["rejected.unknown_job"] == 1)
        }
    }

    @Test func anImageThatCannotBeReadIsRefusedWithACode() async throws {
        try await FleetEngineFixture.with { f in
            let unreadable = Setup(f, images: FixedImages(failure: ReadFailure()))
            #expect(unreadable.pipeline.image(of: f.target).failureCode == "image_unavailable")
            #expect(unreadable.pipeline.counters["rejected.image_unavailable"] == 1)

            let missing = UpdraftError("firmware_image_missing", "gone")
            let told = Setup(f, images: FixedImages(failure: missing))
            #expect(told.pipeline.image(of: f.target).failureCode == "firmware_image_missing", "the store's own error is kept")
        }
    }
}

/// Any decodable body: the pipeline's decode is generic.
struct AnnounceBodyProbe: Decodable {
    var product: String
}

extension Result where Failure == UpdraftError {
    var failureCode: String? {
        if case .failure(let error) = self { error.code } else { nil }
    }
}
