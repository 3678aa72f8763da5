import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

/// The managed broker dies (SIGKILL) under a running `updraft serve` whose connection is
/// TLS (the default): serve restarts it, and both the gateway and a TLS device must come
/// back on their own, or the fleet stalls with nobody noticing.
@Suite(.serialized, .timeLimit(.minutes(4))) struct BrokerRestartTLSTests {
    @Test func theGatewayAndATLSDeviceReconnectAfterTheBrokerIsKilled() async throws {
        let binary = try #require(ProcessRestartTests.updraftBinary, "build the updraft executable first")
        let folder = try await ServeFolder("updraft-brokerkill", imageBytes: 100_000, seed: 5)
        let serve = try ProcessRestartTests().serve(binary, dataDir: folder.path, port: folder.brokerPort)
        defer { folder.remove(after: [serve]) }
        let fleet = try await folder.startedFleet(2)
        let first = try #require(EventFeedTests.brokerPID(folder.path))
        kill(first, SIGKILL)
        try await eventually(timeout: .seconds(30), "serve to restart its broker") {
            if let pid = EventFeedTests.brokerPID(folder.path), pid != first, kill(pid, 0) == 0 { return true }
            return false
        }
        // Reaches the devices only if the gateway and both devices reconnected over TLS.
        let plan = try await folder.ops.createRelease(firmwareID: folder.firmware.id, target: .product("thermo"), allowDowngrade: false)
        try await eventually(timeout: .seconds(90), "every job to succeed after the broker restart") {
            try await folder.ops.store.jobs(release: plan.release.id).allSatisfy { $0.state == .succeeded }
        }
        await fleet.stop()
    }
}
