import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftStore

/// A device reporting progress for another device's job is refused `not_your_job` by the
/// engine, for every protocol, and the other device's job is untouched.
@Suite("UpdateEngine reports on another device's job")
struct ForeignJobReportTests {
    @Test func aReportOnAnotherDevicesJobIsRefusedAndChangesNothing() async throws {
        try await FleetEngineFixture.with { f in
            for id: DeviceID in ["d1", "d2"] { await f.engine.announced(id, Announcement(product: "p", version: "1")) }
            _ = try await f.release()
            await f.tick()
            let victim = try #require(await f.engine.activeJob(of: "d1"))
            let reply = await f.engine.report("d2", job: victim.id, .installed)
            #expect(reply.refusal?.code == "not_your_job")
            #expect(reply.commands.isEmpty, "nothing is sent to either device")
            #expect(await f.engine.activeJob(of: "d1")?.state == victim.state, "the other device's job is untouched")
            let unknown = await f.engine.report("d2", job: "jnobodyhasthis", .downloaded).refusal
            #expect(unknown?.code == "unknown_job")
        }
    }
}
