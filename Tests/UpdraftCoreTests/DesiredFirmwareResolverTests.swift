import Foundation
import Testing
@testable import UpdraftCore

/// One row of the precedence table.
struct PrecedenceCase: Sendable, CustomTestStringConvertible {
    var development: Bool
    var locked: Bool
    /// 0: no group release; 1: one group of the device has a release; 2: both of its groups
    /// do, with different versions.
    var groupReleases: Int
    var productDefault: Bool
    var deviceList: Bool

    var testDescription: String {
        "dev=\(development) lock=\(locked) groups=\(groupReleases) default=\(productDefault) list=\(deviceList)"
    }

    static let all: [PrecedenceCase] = {
        var cases: [PrecedenceCase] = []
        for development in [false, true] {
            for locked in [false, true] {
                for groups in 0...2 {
                    for productDefault in [false, true] {
                        for deviceList in [false, true] {
                            cases.append(PrecedenceCase(development: development, locked: locked, groupReleases: groups, productDefault: productDefault, deviceList: deviceList))
                        }
                    }
                }
            }
        }
        return cases
    }()

    /// The rule, written out independently of the resolver.
    var expected: DesiredFirmware {
        if locked { return .firmware(FleetHarness.fw("0.9"), release: "rlock", reason: .locked(.now)) }
        if deviceList { return .firmware(FleetHarness.fw("1.0"), release: "rlist", reason: .deviceList) }
        if development { return .none(.development) }
        if groupReleases == 2 { return .firmware(FleetHarness.fw("4.0"), release: "rbeta", reason: .group("beta")) }
        if groupReleases == 1 { return .firmware(FleetHarness.fw("3.0"), release: "rlab", reason: .group("lab")) }
        if productDefault { return .firmware(FleetHarness.fw("2.0"), release: "rdefault", reason: .productDefault) }
        return .none(.noRelease)
    }
}

@Suite struct DesiredFirmwareResolverTests {
    let now = FleetHarness.t0

    func device(
        _ id: DeviceID = "d1", product: ProductID? = "thermo", version: FirmwareVersion? = "1.0", groups: [GroupID] = [],
        development: Bool = false, lock: FirmwareLock? = nil
    ) -> FleetDevice {
        FleetDevice(
            device: Device(id: id, product: product, version: version),
            profile: DeviceFleetProfile(groups: groups, isDevelopment: development, lock: lock))
    }

    func release(
        _ id: ReleaseID, _ version: FirmwareVersion, _ target: FleetTarget, policy: BatchPolicy = BatchPolicy(),
        product: ProductID = "thermo", at offset: TimeInterval = 0
    ) -> FleetRelease {
        FleetRelease(id: id, firmware: FleetHarness.fw(version, product: product), target: target, policy: policy, createdAt: now + offset)
    }

    @Test(arguments: PrecedenceCase.all)
    func precedenceTable(_ row: PrecedenceCase) {
        let lock = row.locked ? FirmwareLock(releaseID: "rlock", firmware: FleetHarness.fw("0.9"), delivery: .now, lockedAt: now) : nil
        let d = device(groups: ["lab", "beta"], development: row.development, lock: lock)
        var releases: [FleetRelease] = [
            // Releases that never apply to this device, present in every row.
            release("rother", "5.0", .groups(["field"])),
            release("rlamp", "5.0", .productDefault("lamp"), product: "lamp"),
        ]
        if row.groupReleases >= 1 { releases.append(release("rlab", "3.0", .groups(["lab"]))) }
        if row.groupReleases >= 2 { releases.append(release("rbeta", "4.0", .groups(["beta"]))) }
        if row.productDefault { releases.append(release("rdefault", "2.0", .productDefault("thermo"))) }
        // A device release of a lower version than the groups': precedence, not version, decides.
        if row.deviceList { releases.append(release("rlist", "1.0", .devices(["d1", "d2"]))) }
        for order in [releases, releases.reversed()] {
            #expect(DesiredFirmwareResolver.resolve(d, releases: order, at: now) == row.expected)
        }
    }

    @Test func precedenceTableCoversEveryCombination() {
        #expect(PrecedenceCase.all.count == 2 * 2 * 3 * 2 * 2)
    }

    @Test func unlockReturnsTheDeviceToTheRules() {
        var d = device(groups: ["lab"], lock: FirmwareLock(releaseID: "rlock", firmware: FleetHarness.fw("0.9"), delivery: .nextSession, lockedAt: now))
        let releases = [release("rlab", "3.0", .groups(["lab"]))]
        #expect(DesiredFirmwareResolver.resolve(d, releases: releases, at: now).releaseID == "rlock")
        let removed = d.profile.unlock()
        #expect(removed?.releaseID == "rlock")
        #expect(DesiredFirmwareResolver.resolve(d, releases: releases, at: now) == .firmware(FleetHarness.fw("3.0"), release: "rlab", reason: .group("lab")))
    }

    @Test func lockToAnotherProductStillWinsButGivesNothing() {
        let lock = FirmwareLock(releaseID: "rlock", firmware: FleetHarness.fw("2.0", product: "lamp"), delivery: .now, lockedAt: now)
        let d = device(lock: lock)
        #expect(DesiredFirmwareResolver.resolve(d, releases: [release("rd", "2.0", .productDefault("thermo"))], at: now) == .none(.lockedToOtherProduct))
    }

    @Test func onlyReleasesInForceCount() throws {
        let d = device(groups: ["lab"])
        let fallback = release("rdefault", "2.0", .productDefault("thermo"))
        var scheduled = release("rlab", "3.0", .groups(["lab"]), policy: BatchPolicy(start: .at(now + 60)))
        #expect(DesiredFirmwareResolver.resolve(d, releases: [fallback, scheduled], at: now).releaseID == "rdefault")
        #expect(DesiredFirmwareResolver.resolve(d, releases: [fallback, scheduled], at: now + 60).releaseID == "rlab")
        _ = try scheduled.rollout.apply(.pause, at: now, release: scheduled.id)
        #expect(DesiredFirmwareResolver.resolve(d, releases: [fallback, scheduled], at: now + 60).releaseID == "rlab", "paused still holds")
        _ = try scheduled.rollout.apply(.cancel, at: now, release: scheduled.id)
        #expect(DesiredFirmwareResolver.resolve(d, releases: [fallback, scheduled], at: now + 60).releaseID == "rdefault")
    }

    @Test func batchFiltersLetTheNextRuleDecide() {
        let releases = [
            release("rdefault", "2.0", .productDefault("thermo")),
            release("rlab", "3.0", .groups(["lab"]), policy: BatchPolicy(sourceVersions: ["0.9"])),
        ]
        #expect(DesiredFirmwareResolver.resolve(device(version: "1.0", groups: ["lab"]), releases: releases, at: now).releaseID == "rdefault")
        #expect(DesiredFirmwareResolver.resolve(device(version: "0.9", groups: ["lab"]), releases: releases, at: now).releaseID == "rlab")
        // Once updated it stays with the release it got its firmware from.
        #expect(DesiredFirmwareResolver.resolve(device(version: "3.0", groups: ["lab"]), releases: releases, at: now).releaseID == "rlab")
    }

    @Test func staticMembersOnly() {
        var r = release("rlab", "3.0", .groups(["lab"]))
        r.staticMembers = ["d1"]
        #expect(DesiredFirmwareResolver.resolve(device("d1", groups: ["lab"]), releases: [r], at: now).releaseID == "rlab")
        #expect(DesiredFirmwareResolver.resolve(device("d2", groups: ["lab"]), releases: [r], at: now) == .none(.noRelease))
    }

    @Test func productBoundaries() {
        let releases = [
            release("rlampgroup", "5.0", .groups(["lab"]), product: "lamp"),
            release("rlist", "2.0", .devices(["d1"])),
        ]
        // A lamp release to a group never reaches a thermo device of that group.
        #expect(DesiredFirmwareResolver.resolve(device("d2", groups: ["lab"]), releases: releases, at: now) == .none(.noRelease))
        // A device that has not announced: only a lock or a device release names it.
        #expect(DesiredFirmwareResolver.resolve(device("d1", product: nil, version: nil, groups: ["lab"]), releases: releases, at: now).releaseID == "rlist")
        #expect(DesiredFirmwareResolver.resolve(device("d2", product: nil, version: nil, groups: ["lab"]), releases: releases, at: now) == .none(.unknownProduct))
    }

    @Test func tieBreaks() {
        let d = device(groups: ["a", "b"])
        // Groups: highest version; same version, the earlier release.
        let groups = [
            release("rg1", "3.0", .groups(["a"]), at: 10),
            release("rg2", "3.0", .groups(["b"]), at: 5),
            release("rg3", "2.0", .groups(["b"]), at: 20),
        ]
        #expect(DesiredFirmwareResolver.resolve(d, releases: groups, at: now + 60).releaseID == "rg2")
        // Device lists and product defaults: the newest decision, even if older firmware.
        let lists = [release("rl1", "3.0", .devices(["d1"]), at: 10), release("rl2", "2.0", .devices(["d1"]), at: 20)]
        #expect(DesiredFirmwareResolver.resolve(d, releases: lists, at: now + 60).releaseID == "rl2")
        let defaults = [release("rp1", "3.0", .productDefault("thermo"), at: 10), release("rp2", "2.0", .productDefault("thermo"), at: 20)]
        #expect(DesiredFirmwareResolver.resolve(d, releases: defaults, at: now + 60).releaseID == "rp2")
    }

    @Test func lockReleasesClaimOnlyThroughTheLock() {
        let (lockRelease, _) = FleetRelease.lock(device: "d1", firmware: FleetHarness.fw("0.9"), delivery: .now, id: "rlock", now: now)
        #expect(DesiredFirmwareResolver.resolve(device(), releases: [lockRelease], at: now) == .none(.noRelease))
    }

    @Test func explanationsSayWhy() {
        #expect(DesiredFirmware.none(.development).explanation.contains("development"))
        #expect(
            DesiredFirmware.firmware(FleetHarness.fw("3.0"), release: "rlab", reason: .group("lab")).explanation
                == "thermo@3.0: highest release to group lab (release rlab)")
    }

    @Test func profileKeepsGroupsSortedAndRoundTrips() throws {
        var profile = DeviceFleetProfile(groups: ["b", "a", "b"])
        #expect(profile.groups == ["a", "b"])
        profile.add(to: "c")
        profile.add(to: "a")
        profile.remove(from: "b")
        #expect(profile.groups == ["a", "c"])
        profile.lock = FirmwareLock(releaseID: "rlock", firmware: FleetHarness.fw("2.0"), delivery: .now, lockedAt: now)
        let decoded = try JSONDecoder().decode(DeviceFleetProfile.self, from: JSONEncoder().encode(profile))
        #expect(decoded == profile)
        #expect(try JSONDecoder().decode(DeviceFleetProfile.self, from: Data("{}".utf8)) == .default)
    }
}
