import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice

/// A device reports `installed`, reboots for several seconds and comes back on the new
/// version. Whatever happens around it meanwhile, the broker's replay of its retained
/// announcement (made before the install, old version) must not fail the job.
@Suite(.timeLimit(.minutes(3))) struct DeviceRebootTests {
    enum Trigger: String, CaseIterable, Sendable {
        case gatewayRestart, gatewayConnectionDrop, brokerRestart
    }

    /// Each trigger, with the reference device's boot counter and without it (a device
    /// built before `boot` existed: the gateway has only the retain flag).
    @Test(arguments: Trigger.allCases, [true, false])
    func aRebootDuringWhichTheReplayComesEndsInSuccess(trigger: Trigger, announcesBoot: Bool) async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 20_000)
            let fleet = try await h.fleet(3) {
                $0.rebootDelay = .seconds(4)
                $0.announcesBoot = announcesBoot
            }
            try await h.start(fleet, online: 3)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
            // Every device is now rebooting: its retained announcement still says 1.0.
            // (One that is back already, on a slow machine, has succeeded.)
            try await h.waitForJobs(plan.release.id, timeout: .seconds(60)) { jobs in
                jobs.count == 3 && jobs.allSatisfy { $0.state == .installed || $0.state == .succeeded }
                    && jobs.contains { $0.state == .installed }
            }
            switch trigger {
            case .gatewayRestart:
                await h.stack.stopGateway()
                try await h.stack.startGateway()
            case .gatewayConnectionDrop:
                let gateway = try #require(h.stack.gateway)
                gateway.mqtt.client.simulateNetworkDrop()
            case .brokerRestart:
                h.stack.broker.stop()
                try await h.stack.broker.start()
            }
            let jobs = try await h.waitForJobs(plan.release.id, timeout: .seconds(60)) { jobs in
                jobs.allSatisfy { $0.state.isTerminal }
            }
            #expect(jobs.allSatisfy { $0.state == .succeeded }, "\(jobs.map { "\($0.deviceID): \($0.state) \($0.detail ?? "")" })")
            try await fleet.waitForAll(version: "2.0", timeout: .seconds(30))
            await fleet.stop()
            let events = try await h.ops.store.events(after: 0, limit: 100_000)
            #expect(!events.contains { $0.kind == .jobTransition && $0.to == .failed })
            #expect(!events.contains { $0.kind == .jobRefused })
        }
    }
}
