import Foundation
import Testing
@testable import UpdraftCore

/// Plays the gateway's part around ``FleetPlanner``: keeps devices, releases, jobs and
/// activity, and applies every action the planner returns the way the engine will.
/// Time only moves when a test says so.
final class FleetHarness {
    static let t0 = Date(timeIntervalSince1970: 1_700_000_000)
    static let catalog: [FirmwareVersion: Int64] = ["0.9": 0, "1.0": 1, "2.0": 2, "3.0": 3, "4.0": 4, "5.0": 5]

    static func fw(_ version: FirmwareVersion, product: ProductID = "thermo") -> FirmwareRef {
        FirmwareRef(product: product, version: version, sequence: catalog[version]!)
    }

    var now = t0
    var devices: [DeviceID: FleetDevice] = [:]
    var releases: [ReleaseID: FleetRelease] = [:]
    var jobs: [JobID: Job] = [:]
    var activity: [JobID: JobActivity] = [:]
    var planner: FleetPlanner
    /// Every offer sent: (device, job, nudge, time).
    var offers: [(device: DeviceID, job: JobID, nudge: Bool, at: Date)] = []
    var lastTick = FleetTick(actions: [], nextWakeup: nil)
    private var jobCounter = 0

    init(stallAfter: TimeInterval = 60) { planner = FleetPlanner(stallAfter: stallAfter) }

    /// An independent copy, to replay the same fleet another way.
    func copy() -> FleetHarness {
        let other = FleetHarness(stallAfter: planner.stallAfter)
        other.now = now
        other.devices = devices
        other.releases = releases
        other.jobs = jobs
        other.activity = activity
        other.planner = planner
        other.offers = offers
        other.jobCounter = jobCounter
        return other
    }

    // MARK: Fleet

    func addDevice(
        _ id: DeviceID, version: FirmwareVersion? = "1.0", product: ProductID? = "thermo", groups: [GroupID] = [],
        development: Bool = false, online: Bool = false, accepts: Bool = true
    ) {
        devices[id] = FleetDevice(
            device: Device(id: id, product: product, version: version, acceptsUpdates: accepts, online: online),
            profile: DeviceFleetProfile(groups: groups, isDevelopment: development),
            versionSequence: version.flatMap { Self.catalog[$0] },
            lastAnnouncedAt: online ? now - 3600 : nil)
    }

    func addDevices(_ count: Int, prefix: String = "d", version: FirmwareVersion = "1.0", groups: [GroupID] = [], online: Bool = false) {
        for n in 0..<count {
            addDevice(DeviceID(unchecked: prefix + String(n).leftPadded(to: 4)), version: version, groups: groups, online: online)
        }
    }

    @discardableResult
    func release(
        _ version: FirmwareVersion, to target: FleetTarget = .productDefault("thermo"), policy: BatchPolicy = BatchPolicy(),
        rollout: RolloutPolicy = .single, id: ReleaseID? = nil, kind: FleetReleaseKind = .fleet, allowDowngrade: Bool = false
    ) -> ReleaseID {
        let id = id ?? ReleaseID(unchecked: "r\(releases.count + 1)")
        var release = FleetRelease(
            id: id, kind: kind, firmware: Self.fw(version), target: target, policy: policy, rollout: rollout,
            allowDowngrade: allowDowngrade, createdAt: now)
        if policy.membership == .static {
            release.staticMembers = devices.values.filter { release.matches($0) }.map(\.id)
        }
        releases[id] = release
        return id
    }

    func lock(_ device: DeviceID, to version: FirmwareVersion, delivery: LockDelivery, id: ReleaseID) {
        let (release, lock) = FleetRelease.lock(device: device, firmware: Self.fw(version), delivery: delivery, id: id, now: now)
        releases[id] = release
        devices[device]!.profile.lock = lock
    }

    func advance(_ seconds: TimeInterval) { now += seconds }

    /// The device (re)connects and announces itself.
    /// Device "a" online, downloading a release of 2.0 (10 %).
    static func downloading(stallAfter: TimeInterval) -> FleetHarness {
        let h = FleetHarness(stallAfter: stallAfter)
        h.addDevice("a", online: true)
        h.release("2.0")
        h.tick()
        h.report("a", .downloading(percent: 10))
        return h
    }

    /// Device "on" online, device "off" offline, and a release of 2.0 under `policy`.
    static func onlineAndOffline(releasing policy: BatchPolicy) -> FleetHarness {
        let h = FleetHarness()
        h.addDevice("on", online: true)
        h.addDevice("off")
        h.release("2.0", policy: policy)
        return h
    }

    func connect(_ id: DeviceID, accepts: Bool = true) {
        devices[id]!.device.online = true
        devices[id]!.device.acceptsUpdates = accepts
        devices[id]!.lastAnnouncedAt = now
    }

    func disconnect(_ id: DeviceID) { devices[id]!.device.online = false }

    var snapshot: FleetSnapshot {
        FleetSnapshot(devices: Array(devices.values), releases: Array(releases.values), jobs: Array(jobs.values), activity: activity)
    }

    // MARK: Ticks

    /// One tick, with its actions applied.
    @discardableResult
    func tick() -> FleetTick {
        let tick = planner.tick(at: now, fleet: snapshot)
        for action in tick.actions { apply(action) }
        lastTick = tick
        return tick
    }

    func apply(_ action: FleetAction) {
        switch action {
        case .createJob(let request):
            jobCounter += 1
            let job = request.makeJob(id: JobID(unchecked: "j" + String(jobCounter).leftPadded(to: 5)))
            jobs[job.id] = job
            activity[job.id] = JobActivity()
            if request.offerNow { sendOffer(job.id, nudge: false) }
        case .cancelJob(let id, _, let reason):
            var machine = JobStateMachine(jobs[id]!)
            _ = machine.cancel(at: now)
            var job = machine.job
            job.detail = reason.detail
            jobs[id] = job
        case .offer(let id, _, let nudge):
            sendOffer(id, nudge: nudge)
        case .failJob(let id, _, let reason, let detail):
            var machine = JobStateMachine(jobs[id]!)
            _ = machine.fail(reason, detail: detail, at: now)
            jobs[id] = machine.job
        case .rolloutChanged(let id, let rollout, _):
            releases[id]!.rollout = rollout
        }
    }

    private func sendOffer(_ id: JobID, nudge: Bool) {
        var machine = JobStateMachine(jobs[id]!)
        _ = machine.offered(at: now)
        jobs[id] = machine.job
        activity[id, default: JobActivity()].offered(at: now, nudge: nudge)
        offers.append((jobs[id]!.deviceID, id, nudge, now))
    }

    // MARK: Devices

    func jobs(of device: DeviceID, in release: ReleaseID? = nil) -> [Job] {
        jobs.values.filter { $0.deviceID == device && (release == nil || $0.releaseID == release) }
            .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    func activeJob(_ device: DeviceID) -> Job? { jobs(of: device).last { $0.state.isActive } }

    func report(_ device: DeviceID, _ report: DeviceReport) {
        let job = activeJob(device)!
        var machine = JobStateMachine(job)
        _ = machine.report(report, at: now)
        jobs[job.id] = machine.job
        activity[job.id, default: JobActivity()].progressed(at: now)
    }

    func chunk(_ device: DeviceID) {
        activity[activeJob(device)!.id, default: JobActivity()].chunkRequested(at: now)
    }

    /// Downloads, installs, reboots and announces the target version.
    func succeed(_ device: DeviceID) {
        for step: DeviceReport in [.downloading(percent: 50), .downloaded, .verified, .installing, .installed] { report(device, step) }
        let job = activeJob(device)!
        var machine = JobStateMachine(job)
        _ = machine.announced(version: job.targetVersion, at: now)
        jobs[job.id] = machine.job
        devices[device]!.device.version = job.targetVersion
        devices[device]!.versionSequence = Self.catalog[job.targetVersion]
        devices[device]!.lastAnnouncedAt = now
    }

    func fail(_ device: DeviceID, _ reason: FailureReason = .download) {
        report(device, .failed(reason, detail: nil))
    }

    /// Devices that got a job of the release (any state).
    func admitted(_ release: ReleaseID) -> Set<DeviceID> { Set(jobs.values.filter { $0.releaseID == release }.map(\.deviceID)) }

    func offered(_ device: DeviceID) -> Int { offers.filter { $0.device == device }.count }
}

extension FleetTick {
    var created: [JobRequest] {
        actions.compactMap { if case .createJob(let request) = $0 { request } else { nil } }
    }
    var canceled: [(JobID, CancelReason)] {
        actions.compactMap { if case .cancelJob(let id, _, let reason) = $0 { (id, reason) } else { nil } }
    }
    var offered: [(JobID, Bool)] {
        actions.compactMap { if case .offer(let id, _, let nudge) = $0 { (id, nudge) } else { nil } }
    }
    var failed: [(JobID, FailureReason)] {
        actions.compactMap { if case .failJob(let id, _, let reason, _) = $0 { (id, reason) } else { nil } }
    }
    var rolloutChanges: [RolloutStateMachine.Change] {
        actions.compactMap { if case .rolloutChanged(_, _, let change) = $0 { change } else { nil } }
    }
}

@Suite struct FleetPlannerTests {
    // MARK: Source versions

    @Test func sourceVersionsLimitWhoIsUpgraded() {
        let h = FleetHarness()
        h.addDevice("a", version: "1.0")
        h.addDevice("b", version: "2.0")
        h.addDevice("c", version: "0.9")
        h.addDevice("d", version: nil)
        h.release("3.0", policy: BatchPolicy(sourceVersions: ["1.0", "0.9"]))
        let tick = h.tick()
        #expect(Set(tick.created.map(\.device)) == ["a", "c"])
    }

    @Test func emptySourceVersionsMeanAny() {
        let h = FleetHarness()
        h.addDevice("a", version: "1.0")
        h.addDevice("b", version: "2.0")
        h.addDevice("c", version: "3.0")
        h.release("3.0")
        #expect(Set(h.tick().created.map(\.device)) == ["a", "b"])
    }

    @Test func deviceAlreadyOnTargetGetsNoJobAndDowngradesAreSkipped() {
        let h = FleetHarness()
        h.addDevice("on", version: "2.0")
        h.addDevice("newer", version: "3.0")
        h.release("2.0")
        #expect(h.tick().created.isEmpty)
        let allow = FleetHarness()
        allow.addDevice("newer", version: "3.0")
        allow.release("2.0", allowDowngrade: true)
        #expect(allow.tick().created.map(\.device) == ["newer"])
    }

    // MARK: Static and dynamic

    /// A dynamic batch takes devices that appear later; a static one keeps its members.
    @Test(arguments: [(BatchPolicy.Membership.dynamic, ["late"] as [DeviceID]), (.static, [])])
    func aDeviceThatAppearsLaterJoinsOnlyADynamicBatch(membership: BatchPolicy.Membership, joining: [DeviceID]) {
        let h = FleetHarness()
        h.addDevice("a")
        h.release("2.0", policy: BatchPolicy(membership: membership))
        #expect(h.tick().created.map(\.device) == ["a"])
        h.advance(60)
        h.addDevice("late", version: "1.0")
        h.connect("late")
        #expect(h.tick().created.map(\.device) == joining)
    }

    @Test func dynamicBatchTakesADeviceAnnouncingAnOldVersion() {
        let h = FleetHarness()
        h.addDevice("a", version: "2.0")
        let r = h.release("2.0", policy: BatchPolicy(sourceVersions: ["1.0"], membership: .dynamic))
        #expect(h.tick().created.isEmpty)
        // Reflashed by hand to the old version: it matches now.
        h.advance(60)
        h.devices["a"]!.device.version = "1.0"
        h.devices["a"]!.versionSequence = 1
        h.connect("a")
        #expect(h.tick().created.map(\.device) == ["a"])
        // It updates, then is reflashed to 1.0 again: the release takes it back.
        h.succeed("a")
        #expect(h.tick().actions.isEmpty)
        h.devices["a"]!.device.version = "1.0"
        h.devices["a"]!.versionSequence = 1
        let again = h.tick().created
        #expect(again.map(\.device) == ["a"] && again.first?.release == r)
    }

    @Test func staticBatchMadeByFactoryIncludesNamedUnknownDevices() throws {
        var verification = FirmwareVerification(firmwareID: "thermo@2.0")
        _ = verification.deviceSucceeded("x", at: FleetHarness.t0)
        let devices = [
            FleetDevice(device: Device(id: "a", product: "thermo", version: "1.0")),
            FleetDevice(device: Device(id: "b", product: "lamp", version: "1.0")),
        ]
        let release = try FleetRelease.make(
            FleetReleaseRequest(firmware: FleetHarness.fw("2.0"), target: .devices(["a", "b", "ghost"]), policy: BatchPolicy(membership: .static)),
            verification: verification, devices: devices, now: FleetHarness.t0)
        #expect(release.staticMembers == ["a", "ghost"])
    }

    // MARK: Gray percentage

    @Test func grayPercentageIsDeterministicAndProportional() {
        let h = FleetHarness()
        h.addDevices(2000)
        h.release("2.0", policy: BatchPolicy(selection: .percentage(10)), id: "rgray")
        let first = Set(h.tick().created.map(\.device))
        // Same inputs, fresh planner: same devices.
        var again = FleetPlanner()
        let fresh = h.copy()
        fresh.jobs = [:]
        let second = Set(again.tick(at: h.now, fleet: fresh.snapshot).created.map(\.device))
        #expect(first == second)
        #expect((170...230).contains(first.count), "10% of 2000 is 200, got \(first.count)")
        // Devices joining later do not change who else is picked.
        for n in 0..<500 { h.addDevice(DeviceID(unchecked: "late\(n)")) }
        var withLate = FleetPlanner()
        let third = Set(withLate.tick(at: h.now, fleet: FleetSnapshot(devices: Array(h.devices.values), releases: Array(h.releases.values))).created.map(\.device))
        #expect(first.isSubset(of: third))
        #expect(third.subtracting(first).allSatisfy { $0.rawValue.hasPrefix("late") })
    }

    @Test(arguments: [1.0, 5.0, 25.0, 50.0, 90.0])
    func grayPercentageProportion(_ percent: Double) {
        let devices = (0..<4000).map { DeviceID(unchecked: "dev-\($0)") }
        let picked = devices.filter { Double(FleetHash.bucket(release: "rx", device: $0)) < percent * 100 }.count
        let expected = 4000 * percent / 100
        #expect(abs(Double(picked) - expected) <= max(20, expected * 0.15), "\(percent)%: \(picked) of 4000")
    }

    @Test func grayBucketsDependOnTheRelease() {
        let devices = (0..<200).map { DeviceID(unchecked: "dev-\($0)") }
        let a = devices.filter { FleetHash.bucket(release: "ra", device: $0) < 1000 }
        let b = devices.filter { FleetHash.bucket(release: "rb", device: $0) < 1000 }
        #expect(a != b)
        #expect(FleetHash.bucket(release: "ra", device: "dev-1") == FleetHash.bucket(release: "ra", device: "dev-1"))
    }

    @Test func groupAndListSelectionsNarrowTheTarget() {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"])
        h.addDevice("b", groups: ["field"])
        h.addDevice("c")
        h.release("2.0", policy: BatchPolicy(selection: .groups(["lab"])))
        #expect(h.tick().created.map(\.device) == ["a"])
        let l = FleetHarness()
        l.addDevice("a")
        l.addDevice("b")
        l.release("2.0", policy: BatchPolicy(selection: .devices(["b"])))
        #expect(l.tick().created.map(\.device) == ["b"])
    }

    // MARK: Schedule

    @Test func scheduledReleaseWaitsForItsStart() {
        let h = FleetHarness()
        h.addDevice("a", online: true)
        let start = h.now + 3600
        h.release("2.0", policy: BatchPolicy(start: .at(start)))
        let before = h.tick()
        #expect(before.actions.isEmpty)
        #expect(before.nextWakeup == start)
        #expect(h.planner.nextWakeup(at: h.now, fleet: h.snapshot) == start)
        h.advance(3599)
        #expect(h.tick().actions.isEmpty)
        h.advance(1)
        let at = h.tick()
        #expect(at.created.map(\.device) == ["a"])
        #expect(at.created.first?.offerNow == true)
    }

    @Test func scheduledReleaseDoesNotClaimBeforeItStarts() {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"])
        h.release("2.0")
        h.release("3.0", to: .groups(["lab"]), policy: BatchPolicy(start: .at(h.now + 600)))
        #expect(h.tick().created.map(\.firmware.version) == ["2.0"])
        h.advance(600)
        let tick = h.tick()
        #expect(tick.canceled.map(\.1) == [.superseded(by: "r2")])
        #expect(tick.created.map(\.firmware.version) == ["3.0"])
    }

    // MARK: Retry

    @Test func retryWaitsForTheIntervalAndStopsAtTheMaximum() {
        let h = FleetHarness()
        h.addDevice("a", online: true)
        h.connect("a")
        let r = h.release("2.0", policy: BatchPolicy(retry: RetryPolicy(interval: 600, maxRetries: 2)))
        h.tick()
        for attempt in 1...3 {
            #expect(h.jobs(of: "a").count == attempt)
            h.report("a", .downloading(percent: 10))
            h.fail("a", .download)
            let tick = h.tick()
            #expect(tick.created.isEmpty, "no retry before the interval")
            if attempt < 3 {
                #expect(tick.nextWakeup == h.now + 600)
                h.advance(599)
                #expect(h.tick().created.isEmpty)
                h.advance(1)
                let retry = h.tick().created
                #expect(retry.map(\.attempt) == [attempt + 1])
                #expect(retry.first?.release == r)
            } else {
                #expect(tick.nextWakeup == nil, "retries exhausted: nothing more to do")
                h.advance(3600)
                #expect(h.tick().created.isEmpty)
            }
        }
        #expect(h.jobs(of: "a").count == 3)
    }

    @Test func immediateRetryAndNoRetry() {
        let h = FleetHarness()
        h.addDevice("a")
        h.addDevice("b")
        h.release("2.0", policy: BatchPolicy(selection: .devices(["a"]), retry: RetryPolicy(interval: 0, maxRetries: 1)))
        h.release("2.0", to: .devices(["b"]), policy: BatchPolicy(retry: .none))
        h.tick()
        h.fail("a")
        h.fail("b")
        let tick = h.tick()
        #expect(tick.created.map(\.device) == ["a"])
    }

    @Test func rejectedOffersAreNotRetried() {
        let h = FleetHarness()
        h.addDevice("a")
        h.release("2.0", policy: BatchPolicy(retry: RetryPolicy(interval: 0, maxRetries: 5)))
        h.tick()
        h.fail("a", .rejected)
        #expect(h.tick().created.isEmpty)
    }

    // MARK: Per-device timeout

    @Test func timeoutCountsFromTheFirstProgressReport() {
        let h = FleetHarness()
        h.addDevice("a")
        h.release("2.0", policy: BatchPolicy(deviceTimeout: 900))
        h.tick()
        // Offline for a day: no progress, no timeout.
        h.advance(86_400)
        #expect(h.tick().failed.isEmpty)
        h.connect("a")
        h.tick()
        h.report("a", .downloading(percent: 1))
        let started = h.now
        h.advance(30)
        h.report("a", .downloading(percent: 90))
        h.report("a", .downloaded)
        h.report("a", .verified)
        h.report("a", .installing)
        let waiting = h.tick()
        #expect(waiting.failed.isEmpty)
        #expect(waiting.nextWakeup == started + 900)
        h.advance(870)
        let tick = h.tick()
        #expect(tick.failed.map(\.1) == [.timeout])
        #expect(h.activeJob("a") == nil)
        #expect(h.jobs(of: "a").last?.detail?.contains("first progress") == true)
    }

    // MARK: Rate limit

    @Test func rateLimitSpreadsOffersOverMinutes() {
        let h = FleetHarness()
        h.addDevices(25, online: true)
        h.release("2.0", policy: BatchPolicy(notificationsPerMinute: 10))
        let first = h.tick()
        #expect(first.created.count == 25)
        #expect(first.created.filter(\.offerNow).count == 10)
        #expect(first.nextWakeup == h.now + 60)
        h.advance(30)
        #expect(h.tick().offered.isEmpty)
        h.advance(30)
        #expect(h.tick().offered.count == 10)
        h.advance(60)
        let last = h.tick()
        #expect(last.offered.count == 5)
        #expect(last.nextWakeup == nil)
        // In every 60-second window there were at most 10 offers.
        for offer in h.offers {
            #expect(h.offers.filter { $0.at >= offer.at && $0.at < offer.at + 60 }.count <= 10)
        }
        #expect(Set(h.offers.map(\.device)).count == 25)
    }

    @Test func rateLimitHoldsWithFrequentTicks() {
        let h = FleetHarness()
        h.addDevices(40, online: true)
        h.release("2.0", policy: BatchPolicy(notificationsPerMinute: 7))
        for _ in 0..<(6 * 60 / 5) {
            h.tick()
            h.advance(5)
        }
        #expect(h.offers.count == 40)
        for offer in h.offers {
            #expect(h.offers.filter { $0.at >= offer.at && $0.at < offer.at + 60 }.count <= 7)
        }
    }

    // MARK: Delivery

    @Test func immediateOffersOnlineDevicesNow() {
        let h = FleetHarness.onlineAndOffline(releasing: BatchPolicy(delivery: .immediate))
        let tick = h.tick()
        #expect(tick.created.first { $0.device == "on" }?.offerNow == true)
        #expect(tick.created.first { $0.device == "off" }?.offerNow == false)
        h.advance(10)
        h.connect("off")
        #expect(h.tick().offered.count == 1)
        #expect(h.offered("off") == 1)
    }

    @Test func gradualWaitsForTheNextSession() {
        let h = FleetHarness.onlineAndOffline(releasing: BatchPolicy(delivery: .gradual))
        let tick = h.tick()
        #expect(tick.created.count == 2)
        #expect(tick.created.allSatisfy { !$0.offerNow })
        h.advance(60)
        #expect(h.tick().offered.isEmpty, "still the same session")
        h.connect("on")
        h.connect("off")
        #expect(h.tick().offered.count == 2)
    }

    @Test func notifiedJobIsOfferedAgainAfterReconnect() {
        let h = FleetHarness()
        h.addDevice("a", online: true)
        h.release("2.0")
        h.tick()
        #expect(h.offered("a") == 1)
        h.advance(10)
        #expect(h.tick().actions.isEmpty, "one offer per session")
        h.disconnect("a")
        h.advance(600)
        h.connect("a")
        #expect(h.tick().offered.count == 1)
        #expect(h.offered("a") == 2)
    }

    // MARK: Consent

    @Test func deviceThatRefusesKeepsItsJobPending() throws {
        let h = FleetHarness()
        h.addDevice("busy", online: true, accepts: false)
        let r = h.release("2.0")
        let tick = h.tick()
        #expect(tick.created.map(\.device) == ["busy"])
        #expect(tick.created.first?.offerNow == false)
        let status = try #require(FleetStatus.release(r, fleet: h.snapshot, at: h.now))
        #expect(status.devices.first?.state == .pendingConsent)
        h.advance(300)
        #expect(h.tick().actions.isEmpty)
        h.connect("busy", accepts: true)
        #expect(h.tick().offered.count == 1)
        #expect(h.activeJob("busy")?.state == .notified)
    }

    // MARK: Replacement

    @Test func queuedJobIsReplacedByANewWinner() {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"])
        let old = h.release("2.0")
        h.tick()
        let queued = h.activeJob("a")!
        #expect(queued.state == .queued)
        let new = h.release("3.0", to: .groups(["lab"]))
        let tick = h.tick()
        #expect(tick.canceled.map(\.0) == [queued.id])
        #expect(tick.canceled.map(\.1) == [.superseded(by: new)])
        #expect(tick.created.map(\.release) == [new])
        #expect(h.jobs[queued.id]?.state == .canceled)
        #expect(h.jobs(of: "a", in: old).count == 1)
    }

    @Test func notifiedJobIsReplacedToo() {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"], online: true)
        h.release("2.0")
        h.tick()
        #expect(h.activeJob("a")?.state == .notified)
        h.release("3.0", to: .groups(["lab"]))
        let tick = h.tick()
        #expect(tick.canceled.count == 1)
        #expect(tick.created.first?.offerNow == true)
    }

    @Test(arguments: [JobState.downloading, .downloaded, .verified, .installing, .installed])
    func jobUnderWayIsNeverInterrupted(_ state: JobState) {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"], online: true)
        h.release("2.0")
        h.tick()
        let steps: [DeviceReport] = [.downloading(percent: 5), .downloaded, .verified, .installing, .installed]
        for step in steps {
            h.report("a", step)
            if h.activeJob("a")?.state == state { break }
        }
        #expect(h.activeJob("a")?.state == state)
        let new = h.release("3.0", to: .groups(["lab"]))
        let tick = h.tick()
        #expect(tick.canceled.isEmpty)
        #expect(tick.created.isEmpty)
        // When it finishes, the winner's job follows.
        h.succeed("a")
        #expect(h.devices["a"]?.device.version == "2.0")
        let next = h.tick()
        #expect(next.created.map(\.release) == [new])
    }

    @Test func sameFirmwareFromAnotherReleaseIsNotReplaced() {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"])
        h.release("2.0")
        h.tick()
        h.release("2.0", to: .groups(["lab"]))
        #expect(h.tick().actions.isEmpty)
    }

    @Test func jobsOfUnknownReleasesAreLeftAlone() {
        let h = FleetHarness()
        h.addDevice("a", online: true)
        let legacy = Job(id: "jlegacy", releaseID: "rlegacy", deviceID: "a", firmwareID: "thermo@4.0", targetVersion: "4.0", createdAt: h.now)
        h.jobs[legacy.id] = legacy
        h.release("2.0")
        #expect(h.tick().actions.isEmpty)
    }

    @Test func deviceThatBecomesDevelopmentLosesItsQueuedJob() {
        let h = FleetHarness()
        h.addDevice("a")
        h.release("2.0")
        h.tick()
        h.devices["a"]!.profile.isDevelopment = true
        let tick = h.tick()
        #expect(tick.canceled.map(\.1) == [.noLongerTargeted(.development)])
        #expect(tick.created.isEmpty)
    }

    // MARK: Locks

    @Test func lockNowOverridesReleasesAndOffersAtOnce() {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"], online: true)
        h.release("3.0", to: .groups(["lab"]), policy: BatchPolicy(delivery: .gradual))
        h.tick()
        let groupJob = h.activeJob("a")!
        h.lock("a", to: "0.9", delivery: .now, id: "rlock")
        let tick = h.tick()
        #expect(tick.canceled.map(\.0) == [groupJob.id])
        #expect(tick.created.map(\.release) == ["rlock"])
        #expect(tick.created.first?.offerNow == true)
        #expect(tick.created.first?.firmware.version == "0.9", "a lock may downgrade")
    }

    @Test func lockAtNextSessionWaitsForTheDevice() {
        let h = FleetHarness()
        h.addDevice("a", online: true)
        h.lock("a", to: "2.0", delivery: .nextSession, id: "rlock")
        #expect(h.tick().created.first?.offerNow == false)
        h.advance(60)
        h.connect("a")
        #expect(h.tick().offered.count == 1)
    }

    @Test func unlockReturnsTheDeviceToTheRules() {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"])
        let group = h.release("3.0", to: .groups(["lab"]))
        h.lock("a", to: "2.0", delivery: .nextSession, id: "rlock")
        #expect(h.tick().created.map(\.release) == ["rlock"])
        h.devices["a"]!.profile.unlock()
        let tick = h.tick()
        #expect(tick.canceled.map(\.1) == [.superseded(by: group)])
        #expect(tick.created.map(\.release) == [group])
    }

    // MARK: Stalls

    @Test func stalledDownloadIsNudgedOnceThenFailedThenRetried() {
        let h = FleetHarness(stallAfter: 120)
        h.addDevice("a", online: true)
        h.release("2.0", policy: BatchPolicy(retry: RetryPolicy(interval: 300, maxRetries: 1)))
        h.tick()
        h.report("a", .downloading(percent: 10))
        h.advance(60)
        h.chunk("a")
        let quiet = h.tick()
        #expect(quiet.actions.isEmpty)
        #expect(quiet.nextWakeup == h.now + 120)
        h.advance(120)
        let nudge = h.tick()
        #expect(nudge.offered.map(\.1) == [true])
        #expect(nudge.failed.isEmpty)
        h.advance(60)
        #expect(h.tick().actions.isEmpty, "one nudge only")
        h.advance(60)
        let fail = h.tick()
        #expect(fail.failed.map(\.1) == [.timeout])
        #expect(h.jobs(of: "a").first?.detail?.contains("stalled") == true)
        #expect(h.tick().nextWakeup == h.now + 300)
        h.advance(300)
        let retry = h.tick()
        #expect(retry.created.map(\.attempt) == [2])
        #expect(retry.created.first?.offerNow == true)
    }

    @Test func activityAfterANudgeStartsTheClockAgain() {
        let h = FleetHarness.downloading(stallAfter: 100)
        h.advance(100)
        #expect(h.tick().offered.map(\.1) == [true])
        h.advance(50)
        h.chunk("a")
        h.advance(99)
        #expect(h.tick().actions.isEmpty)
        h.advance(1)
        #expect(h.tick().offered.map(\.1) == [true], "a new stall gets its own nudge")
    }

    @Test func offlineDeviceIsNotJudgedStalled() {
        let h = FleetHarness.downloading(stallAfter: 60)
        h.disconnect("a")
        h.advance(3600)
        #expect(h.tick().actions.isEmpty)
        // Back: its announcement restarts the clock (the engine re-offers on reconnect).
        h.connect("a")
        #expect(h.tick().actions.isEmpty)
        h.advance(60)
        #expect(h.tick().offered.map(\.1) == [true])
    }

    @Test func busyDeviceIsNotJudgedStalled() {
        let h = FleetHarness.downloading(stallAfter: 60)
        h.connect("a", accepts: false)
        h.advance(3600)
        #expect(h.tick().actions.isEmpty)
        h.connect("a", accepts: true)
        h.advance(60)
        #expect(h.tick().offered.map(\.1) == [true])
    }

    // MARK: Rollout through the planner

    @Test func rolloutAdmitsStageByStageAndAdvancesOnSuccess() {
        let h = FleetHarness()
        h.addDevices(100)
        let r = h.release("2.0", rollout: RolloutPolicy(stages: [10, 50, 100], successThreshold: 0.8))
        #expect(h.tick().created.count == 10)
        let stage0 = h.admitted(r)
        h.advance(60)
        for device in stage0.sorted().prefix(7) { h.succeed(device) }
        #expect(h.tick().actions.isEmpty, "70% < 80%")
        h.advance(60)
        h.succeed(stage0.sorted()[7])
        let advance = h.tick()
        #expect(advance.rolloutChanges == [.advanced(from: 0, to: 1, automatic: true)])
        #expect(advance.created.count == 40)
        #expect(h.admitted(r).count == 50)
        #expect(h.admitted(r).isSuperset(of: stage0))
        // The stage's own devices decide: stage-0 successes do not count for stage 1.
        h.advance(60)
        for device in h.admitted(r).subtracting(stage0).sorted().prefix(31) { h.succeed(device) }
        #expect(h.tick().actions.isEmpty)
        h.advance(60)
        h.succeed(h.admitted(r).subtracting(stage0).sorted()[31])
        let last = h.tick()
        #expect(last.rolloutChanges == [.advanced(from: 1, to: 2, automatic: true)])
        #expect(h.admitted(r).count == 100)
    }

    @Test func rolloutAdmissionIsDeterministic() {
        let a = FleetHarness()
        a.addDevices(300)
        let r = a.release("2.0", rollout: RolloutPolicy(stages: [5, 100]), id: "rnest")
        a.tick()
        let b = a.copy()
        b.jobs = [:]
        b.tick()
        #expect(a.admitted(r) == b.admitted(r))
        #expect(a.admitted(r).count == 15)
    }

    @Test func rolloutPausesOnErrorsAndResumes() throws {
        let h = FleetHarness()
        h.addDevices(20)
        let r = h.release(
            "2.0", policy: BatchPolicy(retry: RetryPolicy(interval: 600, maxRetries: 3)),
            rollout: RolloutPolicy(stages: [25, 100], successThreshold: 1, errorThreshold: 0.2, onError: .pause))
        h.tick()
        let admitted = h.admitted(r).sorted()
        #expect(admitted.count == 5)
        h.advance(10)
        h.fail(admitted[0])
        #expect(h.tick().rolloutChanges.isEmpty, "1 of 5 is not more than 20%")
        h.fail(admitted[1])
        h.fail(admitted[2])
        let paused = h.tick()
        #expect(paused.rolloutChanges == [.paused(.errorThreshold(failed: 3, of: 5))])
        #expect(h.releases[r]?.rollout.phase == .paused(.errorThreshold(failed: 3, of: 5)))
        h.advance(600)
        #expect(h.tick().actions.isEmpty, "no retries while paused")
        // The operator resumes: the failures seen no longer count, and the retries go out.
        #expect(try h.releases[r]!.rollout.apply(.resume, at: h.now, release: r) == .resumed)
        let resumed = h.tick()
        #expect(resumed.rolloutChanges.isEmpty)
        #expect(Set(resumed.created.map(\.device)) == Set(admitted.prefix(3)))
        // New failures count again.
        h.advance(10)
        for device in admitted.prefix(2) { h.fail(device) }
        #expect(h.tick().rolloutChanges == [.paused(.errorThreshold(failed: 2, of: 5))])
    }

    @Test func rolloutAbortCancelsJobsThatHaveNotStartedInstalling() {
        let h = FleetHarness()
        h.addDevices(4, online: true)
        let r = h.release("2.0", rollout: RolloutPolicy(stages: [100], errorThreshold: 0.25, onError: .abort))
        h.tick()
        let ds = h.admitted(r).sorted()
        h.report(ds[0], .downloading(percent: 5))
        for step: DeviceReport in [.downloading(percent: 50), .downloaded, .verified, .installing] { h.report(ds[1], step) }
        h.fail(ds[2])
        h.fail(ds[3])
        let downloading = h.activeJob(ds[0])!.id
        let tick = h.tick()
        #expect(tick.rolloutChanges == [.aborted(failed: 2, of: 4)])
        #expect(tick.canceled.map(\.0) == [downloading])
        #expect(tick.canceled.map(\.1) == [.releaseStopped])
        #expect(h.jobs(of: ds[0]).last?.state == .canceled)
        #expect(h.jobs(of: ds[1]).last?.state == .installing)
        #expect(h.releases[r]?.rollout.phase == .aborted(failed: 2, of: 4))
        #expect(h.tick().actions.isEmpty)
    }

    @Test func abortedReleaseLetsDevicesFallBack() {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"])
        h.addDevice("b", groups: ["lab"])
        let fallback = h.release("2.0")
        let bad = h.release("3.0", to: .groups(["lab"]), rollout: RolloutPolicy(errorThreshold: 0.4, onError: .abort))
        h.tick()
        #expect(h.admitted(bad) == ["a", "b"])
        h.fail("a")
        h.fail("b")
        let tick = h.tick()
        #expect(tick.rolloutChanges == [.aborted(failed: 2, of: 2)])
        #expect(Set(tick.created.map(\.device)) == ["a", "b"])
        #expect(tick.created.allSatisfy { $0.release == fallback })
    }

    @Test func manualAdvanceAdmitsTheNextStage() throws {
        let h = FleetHarness()
        h.addDevices(10)
        let r = h.release("2.0", rollout: RolloutPolicy(stages: [10, 100]))
        #expect(h.tick().created.count == 1)
        h.advance(60)
        h.succeed(h.admitted(r).first!)
        #expect(h.tick().actions.isEmpty, "no success threshold: waits for the operator")
        h.advance(60)
        #expect(try h.releases[r]!.rollout.apply(.advance, at: h.now, release: r) == .advanced(from: 0, to: 1, automatic: false))
        #expect(h.tick().created.count == 9)
    }

    @Test func staticReleaseCompletesWhenEveryDeviceIsDone() throws {
        let h = FleetHarness()
        h.addDevice("a", groups: ["lab"])
        h.addDevice("b", groups: ["lab"])
        let r = h.release("2.0", to: .groups(["lab"]), policy: BatchPolicy(membership: .static))
        h.tick()
        h.succeed("a")
        #expect(h.tick().rolloutChanges.isEmpty)
        h.fail("b")
        #expect(h.tick().rolloutChanges == [.completed])
        #expect(h.releases[r]?.rollout.phase == .completed)
        // A completed release still holds its devices against lower rules.
        h.release("3.0")
        #expect(h.tick().actions.isEmpty)
        // Canceling it withdraws it: they fall back to the product default.
        #expect(try h.releases[r]!.rollout.apply(.cancel, at: h.now, release: r) == .canceled)
        #expect(Set(h.tick().created.map(\.device)) == ["a", "b"])
    }

    @Test func dynamicReleaseNeverCompletesOnItsOwn() {
        let h = FleetHarness()
        h.addDevice("a")
        h.release("2.0")
        h.tick()
        h.succeed("a")
        #expect(h.tick().actions.isEmpty)
    }

    // MARK: Convergence

    @Test func aTickOverItsOwnResultDoesNothing() {
        let h = FleetHarness()
        h.addDevices(30, groups: ["lab"], online: true)
        h.addDevice("dev", groups: ["lab"], development: true, online: true)
        h.release("2.0")
        h.release("3.0", to: .groups(["lab"]), policy: BatchPolicy(selection: .percentage(50)))
        h.lock("d0001", to: "4.0", delivery: .now, id: "rlock")
        #expect(!h.tick().actions.isEmpty)
        let again = h.tick()
        #expect(again.actions.isEmpty)
        #expect(again.nextWakeup == nil)
        #expect(h.planner.nextWakeup(at: h.now, fleet: h.snapshot) == nil)
    }

    @Test func nextWakeupIsNowWhenWorkIsWaiting() {
        let h = FleetHarness()
        h.addDevice("a")
        h.release("2.0")
        #expect(h.planner.nextWakeup(at: h.now, fleet: h.snapshot) == h.now)
        #expect(h.planner.limiters.isEmpty)
    }

    @Test func plannerStateRoundTripsThroughJSON() throws {
        let h = FleetHarness()
        h.addDevices(3, online: true)
        h.release("2.0", policy: BatchPolicy(notificationsPerMinute: 2))
        h.tick()
        let data = try JSONEncoder().encode(h.planner)
        let decoded = try JSONDecoder().decode(FleetPlanner.self, from: data)
        #expect(decoded == h.planner)
        #expect(decoded.limiters["r1"]?.granted.count == 2)
    }
}
