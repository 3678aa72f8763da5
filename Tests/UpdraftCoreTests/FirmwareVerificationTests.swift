import Foundation
import Testing
@testable import UpdraftCore

@Suite struct FirmwareVerificationTests {
    let now = FleetHarness.t0
    let firmware = FleetHarness.fw("2.0")

    func verifying(_ devices: [DeviceID] = ["t1", "t2"]) throws -> FirmwareVerification {
        var v = FirmwareVerification(firmwareID: "thermo@2.0")
        _ = try v.start(release: "rverify", devices: devices, at: now)
        return v
    }

    @Test func unverifiedToVerifyingToVerified() throws {
        var v = FirmwareVerification(firmwareID: "thermo@2.0")
        #expect(v.status == .unverified)
        let start = try v.start(release: "rverify", devices: ["t1", "t2", "t1"], at: now)
        #expect(start == .createVerificationRelease("rverify", devices: ["t1", "t2"]))
        #expect(v.status == .verifying)
        var action = v.deviceFailed("t1", at: now)
        #expect(action == nil)
        #expect(v.status == .verifying, "one test device is still trying")
        action = v.deviceSucceeded("t2", at: now + 60)
        #expect(action == .statusChanged(from: .verifying, to: .verified))
        #expect(v.status == .verified)
        #expect(v.verifiedBy == "t2")
        action = v.deviceSucceeded("t1", at: now + 90)
        #expect(action == nil, "already verified")
    }

    @Test func failsWhenEveryTestDeviceFails() throws {
        var v = try verifying()
        var action = v.deviceFailed("other", at: now)
        #expect(action == nil, "not a test device")
        action = v.deviceFailed("t1", at: now)
        #expect(action == nil)
        action = v.deviceFailed("t1", at: now)
        #expect(action == nil, "counted once")
        #expect(v.status == .verifying)
        action = v.deviceFailed("t2", at: now)
        #expect(action == .statusChanged(from: .verifying, to: .failed))
        #expect(v.status == .failed)
        #expect(v.failedDevices == ["t1", "t2"])
    }

    @Test func failedCanBeVerifiedAgain() throws {
        var v = try verifying(["t1"])
        _ = v.deviceFailed("t1", at: now)
        #expect(v.status == .failed)
        let action = try v.start(release: "rverify2", devices: ["t3"], at: now + 60)
        #expect(action == .createVerificationRelease("rverify2", devices: ["t3"]))
        #expect(v.status == .verifying)
        #expect(v.failedDevices.isEmpty)
        #expect(v.releaseID == "rverify2")
    }

    @Test func anyDeviceRunningItVerifiesIt() {
        // A developer locked a bench device to it and it ran: that is the proof.
        var v = FirmwareVerification(firmwareID: "thermo@2.0")
        let action = v.deviceSucceeded("bench", at: now)
        #expect(action == .statusChanged(from: .unverified, to: .verified))
    }

    @Test func lateSuccessAfterFailureVerifies() throws {
        var v = try verifying(["t1"])
        _ = v.deviceFailed("t1", at: now)
        let action = v.deviceSucceeded("t1", at: now + 60)
        #expect(action == .statusChanged(from: .failed, to: .verified))
    }

    @Test func cancelingTheVerificationGoesBack() throws {
        var v = try verifying()
        var action = v.verificationCanceled(at: now)
        #expect(action == .statusChanged(from: .verifying, to: .unverified))
        action = v.verificationCanceled(at: now)
        #expect(action == nil)
    }

    @Test func startRefusals() throws {
        var empty = FirmwareVerification(firmwareID: "thermo@2.0")
        #expect(throws: UpdraftError.self) { try empty.start(release: "r", devices: [], at: now) }
        var inProgress = try verifying()
        let busy = #expect(throws: UpdraftError.self) { try inProgress.start(release: "r2", devices: ["t9"], at: now) }
        #expect(busy?.code == "verification_in_progress")
        #expect(busy?.message.contains("updraft release cancel rverify") == true)
        var done = FirmwareVerification(firmwareID: "thermo@2.0")
        _ = done.deviceSucceeded("x", at: now)
        let already = #expect(throws: UpdraftError.self) { try done.start(release: "r", devices: ["t1"], at: now) }
        #expect(already?.code == "firmware_already_verified")
    }

    // MARK: The gate

    @Test(arguments: [
        (VerificationStatus.unverified, "firmware_unverified"), (.verifying, "firmware_verifying"), (.failed, "firmware_verification_failed"),
    ])
    func gateRefusesUnverifiedFirmware(_ status: VerificationStatus, _ code: String) throws {
        var v = FirmwareVerification(firmwareID: "thermo@2.0")
        if status != .unverified { _ = try v.start(release: "rverify", devices: ["t1"], at: now) }
        if status == .failed { _ = v.deviceFailed("t1", at: now) }
        #expect(v.status == status)
        let error = #expect(throws: UpdraftError.self) { try v.authorizeFleetRelease(force: false) }
        #expect(error?.code == code)
        #expect(error?.message.contains("--force") == true)
        #expect(try v.authorizeFleetRelease(force: true) == .forced(status))
    }

    @Test func gateMessageSaysWhatToRun() {
        let v = FirmwareVerification(firmwareID: "thermo@2.0")
        let error = #expect(throws: UpdraftError.self) { try v.authorizeFleetRelease(force: false) }
        #expect(error?.message.contains("Run `updraft firmware verify thermo@2.0 --devices ID[,ID...]` first") == true)
    }

    @Test func verifiedFirmwarePasses() throws {
        var v = FirmwareVerification(firmwareID: "thermo@2.0")
        _ = v.deviceSucceeded("t1", at: now)
        #expect(try v.authorizeFleetRelease(force: false) == .verified)
        #expect(try v.authorizeFleetRelease(force: true) == .verified, "force changes nothing for verified firmware")
    }

    @Test func fleetReleaseIsRefusedOrRecordedAsForced() throws {
        let v = FirmwareVerification(firmwareID: "thermo@2.0")
        let request = FleetReleaseRequest(id: "rfleet", firmware: firmware, target: .productDefault("thermo"))
        #expect(throws: UpdraftError.self) { try FleetRelease.make(request, verification: v, devices: [], now: now) }
        var forced = request
        forced.force = true
        let release = try FleetRelease.make(forced, verification: v, devices: [], now: now)
        #expect(release.isForced)
        #expect(release.forcedFrom == .unverified)
        var verified = v
        _ = verified.deviceSucceeded("t1", at: now)
        #expect(try FleetRelease.make(request, verification: verified, devices: [], now: now).isForced == false)
    }

    @Test func verificationReleaseSkipsTheGateAndIsStatic() throws {
        var v = FirmwareVerification(firmwareID: "thermo@2.0")
        guard case .createVerificationRelease(let id, let devices) = try v.start(release: "rverify", devices: ["t1"], at: now) else {
            Issue.record("expected a verification release")
            return
        }
        let release = try FleetRelease.make(
            FleetReleaseRequest(id: id, kind: .verification, firmware: firmware, target: .devices(devices)), verification: v,
            devices: [FleetDevice(device: Device(id: "t1", product: "thermo", version: "1.0"), profile: DeviceFleetProfile(isDevelopment: true))],
            now: now)
        #expect(release.kind == .verification)
        #expect(release.policy.membership == .static)
        #expect(release.staticMembers == ["t1"])
        #expect(!release.isForced)
        // A verification must name devices.
        #expect(throws: UpdraftError.self) {
            try FleetRelease.make(
                FleetReleaseRequest(kind: .verification, firmware: firmware, target: .productDefault("thermo")), verification: v, devices: [], now: now)
        }
    }

    @Test func releaseRequestValidation() {
        var v = FirmwareVerification(firmwareID: "thermo@2.0")
        _ = v.deviceSucceeded("t1", at: now)
        let bad: [(FleetReleaseRequest, String)] = [
            (FleetReleaseRequest(firmware: firmware, target: .productDefault("lamp")), "product_mismatch"),
            (FleetReleaseRequest(firmware: firmware, target: .groups([])), "invalid_target"),
            (FleetReleaseRequest(firmware: firmware, target: .devices([])), "invalid_target"),
            (FleetReleaseRequest(firmware: firmware, target: .groups(["lab"]), policy: BatchPolicy(selection: .percentage(0))), "invalid_percentage"),
            (FleetReleaseRequest(firmware: firmware, target: .groups(["lab"]), rollout: RolloutPolicy(stages: [10, 50])), "invalid_stages"),
        ]
        for (request, code) in bad {
            let error = #expect(throws: UpdraftError.self) { try FleetRelease.make(request, verification: v, devices: [], now: now) }
            #expect(error?.code == code)
        }
        let other = FirmwareVerification(firmwareID: "thermo@3.0")
        #expect(throws: UpdraftError.self) {
            try FleetRelease.make(FleetReleaseRequest(firmware: firmware, target: .groups(["lab"])), verification: other, devices: [], now: now)
        }
    }

    @Test func roundTripsThroughJSON() throws {
        var v = try verifying()
        _ = v.deviceFailed("t1", at: now)
        let decoded = try JSONDecoder().decode(FirmwareVerification.self, from: JSONEncoder().encode(v))
        #expect(decoded == v)
    }
}

extension FirmwareVerificationTests {
    @Test func verificationReleaseEndingWithoutSuccessFails() throws {
        var v = try verifying()
        let ended = v.verificationReleaseEnded(at: now + 60)
        #expect(ended == .statusChanged(from: .verifying, to: .failed))
        var verified = try verifying()
        _ = verified.deviceSucceeded("t1", at: now)
        let after = verified.verificationReleaseEnded(at: now + 60)
        #expect(after == nil)
        #expect(verified.status == .verified)
    }

    /// The whole gate through the planner: verify on a development test device, see it
    /// succeed, then release to the fleet.
    @Test func verificationEndToEnd() throws {
        let h = FleetHarness()
        h.addDevice("bench", development: true, online: true)
        h.addDevice("field", online: true)
        var v = FirmwareVerification(firmwareID: "thermo@2.0")
        let fleetRequest = FleetReleaseRequest(id: "rfleet", firmware: firmware, target: .productDefault("thermo"))
        #expect(throws: UpdraftError.self) { try FleetRelease.make(fleetRequest, verification: v, devices: Array(h.devices.values), now: h.now) }
        let start = try v.start(release: "rverify", devices: ["bench"], at: h.now)
        guard case .createVerificationRelease(let id, let devices) = start else { throw UpdraftError("test", "no release") }
        h.releases[id] = try FleetRelease.make(
            FleetReleaseRequest(id: id, kind: .verification, firmware: firmware, target: .devices(devices)), verification: v,
            devices: Array(h.devices.values), now: h.now)
        let first = h.tick()
        #expect(first.created.map(\.device) == ["bench"], "only the test device, development or not")
        h.succeed("bench")
        #expect(v.deviceSucceeded("bench", at: h.now) == .statusChanged(from: .verifying, to: .verified))
        #expect(h.tick().rolloutChanges == [.completed])
        h.advance(60)
        h.releases["rfleet"] = try FleetRelease.make(fleetRequest, verification: v, devices: Array(h.devices.values), now: h.now)
        #expect(h.tick().created.map(\.device) == ["field"])
    }

    @Test func locksAreNotMadeAsReleases() {
        let v = FirmwareVerification(firmwareID: "thermo@2.0")
        let error = #expect(throws: UpdraftError.self) {
            try FleetRelease.make(FleetReleaseRequest(kind: .lock, firmware: firmware, target: .devices(["a"])), verification: v, devices: [], now: now)
        }
        #expect(error?.code == "invalid_kind")
    }

    @Test func releaseCommandsCarryTheReleaseID() throws {
        var release = FleetRelease(id: "r42", firmware: firmware, target: .groups(["lab"]), createdAt: now)
        let paused = try release.apply(.pause, at: now)
        #expect(paused == .paused(.operatorRequest))
        let error = #expect(throws: UpdraftError.self) { try release.apply(.advance, at: now) }
        #expect(error?.message.contains("updraft release resume r42") == true)
    }
}
