import Foundation
import Testing
@testable import UpdraftCore

@Suite struct ReleasePlannerTests {
    let now = Date(timeIntervalSince1970: 1_700_000_000)
    var firmware: Firmware {
        Firmware(product: "thermo", version: "2.0", sequence: 5, size: 10, sha256: "x", md5: "y", createdAt: now,
                 manifest: SignedManifest(payload: [], signature: []))
    }
    let sequences: [String: Int64] = ["1.0": 1, "2.0": 5, "3.0": 9]

    func plan(_ target: ReleaseTarget, devices: [Device], active: [DeviceID: JobID] = [:], allowDowngrade: Bool = false) -> ReleasePlan {
        ReleasePlanner.plan(
            release: Release(firmwareID: firmware.id, target: target, allowDowngrade: allowDowngrade, createdAt: now),
            firmware: firmware, devices: Dictionary(uniqueKeysWithValues: devices.map { ($0.id, $0) }),
            activeJobs: active, sequenceOf: { _, v in sequences[v.rawValue] })
    }

    @Test func productReleaseSkipsWithReasons() {
        let devices = [
            Device(id: "a", product: "thermo", version: "1.0"),
            Device(id: "b", product: "thermo", version: "2.0"),
            Device(id: "c", product: "thermo", version: "3.0"),
            Device(id: "d", product: "lamp", version: "1.0"),
            Device(id: "e", product: "thermo", version: "1.0"),
        ]
        let p = plan(.product("thermo"), devices: devices, active: ["e": "jbusy"])
        #expect(p.jobs.map(\.deviceID) == ["a"])
        #expect(p.skipped.map(\.0) == ["b", "c", "e"])
        #expect(p.skipped.map(\.1) == [.alreadyOnTarget, .downgrade(from: "3.0"), .hasActiveJob("jbusy")])
        #expect(p.jobs[0].targetVersion == "2.0")
        #expect(p.jobs[0].state == .queued)
    }

    @Test func downgradeAllowedWhenAsked() {
        let p = plan(.devices(["c"]), devices: [Device(id: "c", product: "thermo", version: "3.0")], allowDowngrade: true)
        #expect(p.jobs.count == 1)
    }

    @Test func deviceListKeepsUnknownDevicesAndDropsDuplicates() {
        let p = plan(.devices(["x", "a", "x", "d"]), devices: [
            Device(id: "a", product: "thermo", version: "1.0"), Device(id: "d", product: "lamp", version: "1.0"),
        ])
        #expect(p.jobs.map(\.deviceID) == ["x", "a"])
        #expect(p.unknownDevices == ["x"])
        #expect(p.skipped.map(\.1) == [.otherProduct("lamp")])
    }

    @Test func unknownVersionIsNotADowngrade() {
        let p = plan(.devices(["a"]), devices: [Device(id: "a", product: "thermo", version: "custom-build")])
        #expect(p.jobs.count == 1)
    }
}
