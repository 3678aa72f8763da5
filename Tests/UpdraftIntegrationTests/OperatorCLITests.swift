import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftStore
import UpdraftTestSupport

/// Issue 11, item 7 and the actor of item 3, through the real binary on real SQLite files:
/// `--version`, `--json` on the read commands, taking back jobs, firmware and devices, and
/// `release watch`'s exit status. Each happy path has its hostile twin.
@Suite(.serialized, .timeLimit(.minutes(3))) struct OperatorCLITests {
    /// A data directory with thermo@1.0 and thermo@2.0, a device d1 on 1.0, and the store beside it.
    func fleet(_ cli: CLIProcess) async throws -> (dir: String, ops: Operations) {
        let (dir, ops) = try await cli.thermoCatalog()
        try await ops.store.commit(StoreBatch(devices: [Device(id: "d1", product: "thermo", version: "1.0", online: false)]))
        return (dir, ops)
    }

    /// Runs a command with `--json` and parses its one JSON document.
    func json(_ cli: CLIProcess, _ arguments: [String], dir: String) async throws -> Any {
        let run = try await cli.run(arguments + ["--json", "--data-dir", dir, "--log-level", "error"])
        try #require(run.status == 0, "\(arguments): \(run.output)")
        return try JSONSerialization.jsonObject(with: Data(run.output.utf8))
    }

    /// Runs a command that must be refused: exit 1 and one error line saying `says`.
    func expectRefusal(_ cli: CLIProcess, _ arguments: [String], dir: String, says: String) async throws {
        let run = try await cli.run(arguments + ["--data-dir", dir])
        #expect(run.status == 1 && run.errors.first?.contains(says) == true, "\(arguments): \(run.output)")
    }

    /// A one-off release to `device` made by the CLI, and its one job.
    func release(_ cli: CLIProcess, _ dir: String, _ ops: Operations, to device: String = "d1", extra: [String] = [])
        async throws -> (ReleaseID, Job)
    {
        let made = try await cli.run(["release", "create", "--firmware", "thermo@2.0", "--devices", device, "-q", "--data-dir", dir, "--log-level", "error"] + extra)
        try #require(made.status == 0, "\(made.output)")
        let id = try ReleaseID(validating: made.output.trimmingCharacters(in: .whitespacesAndNewlines))
        let job = try #require(try await ops.store.jobs(release: id).first)
        return (id, job)
    }

    @Test func versionAndEveryReadCommandsJSONParses() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let version = try await cli.run(["--version"])
        #expect(version.status == 0 && version.output.trimmingCharacters(in: .whitespacesAndNewlines) == UpdraftVersion.current, "\(version.output)")
        let (dir, ops) = try await fleet(cli)
        let (releaseID, job) = try await release(cli, dir, ops)
        let firmware = try #require(try await json(cli, ["firmware", "list"], dir: dir) as? [[String: Any]])
        #expect(firmware.compactMap { $0["id"] as? String } == ["thermo@1.0", "thermo@2.0"])
        #expect((try await json(cli, ["firmware", "show", "thermo@2.0"], dir: dir) as? [String: Any])?["verification"] as? String == "unverified")
        let releases = try #require(try await json(cli, ["release", "list"], dir: dir) as? [[String: Any]])
        #expect(releases.first?["release"] as? String == releaseID.rawValue && releases.first?["kind"] as? String == "one-off")
        let shown = try #require(try await json(cli, ["release", "show", releaseID.rawValue], dir: dir) as? [String: Any])
        #expect(shown["phase"] as? String == "running" && shown["total"] as? Int == 1)
        #expect((shown["devices"] as? [[String: Any]])?.first?["job"] as? String == job.id.rawValue)
        let devices = try #require(try await json(cli, ["device", "list"], dir: dir) as? [[String: Any]])
        #expect(devices.first?["id"] as? String == "d1" && devices.first?["online"] as? Bool == false)
        let device = try #require(try await json(cli, ["device", "show", "d1"], dir: dir) as? [String: Any])
        #expect((device["active_job"] as? [String: Any])?["job"] as? String == job.id.rawValue)
        #expect((device["history"] as? [[String: Any]])?.contains { $0["actor"] as? String == ActorName.localCLI().name } == true, "\(device)")
        #expect((try await json(cli, ["job", "show", job.id.rawValue], dir: dir) as? [String: Any])?["state"] as? String == "queued")
        let stats = try #require(try await json(cli, ["stats", "versions"], dir: dir) as? [[String: Any]])
        #expect(stats.first?["product"] as? String == "thermo" && stats.first?["total"] as? Int == 1)
        #expect((try await json(cli, ["credentials", "show"], dir: dir) as? [String: Any])?["gateway"] != nil)
        // Hostile twin: an unknown id is one error line, not JSON.
        try await expectRefusal(cli, ["release", "show", "r000000000000", "--json"], dir: dir, says: "No release 'r000000000000'")
    }

    @Test func jobCancelEndsAWaitingJobOnceAndNamesWhoDidIt() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (dir, ops) = try await fleet(cli)
        // A typo: a device that never connected, whose job would wait forever.
        let (_, job) = try await release(cli, dir, ops, to: "d1-typo", extra: ["--allow-unknown"])
        let canceled = try await cli.run(["job", "cancel", job.id.rawValue, "--data-dir", dir])
        #expect(canceled.status == 0 && canceled.output.contains("canceled"), "\(canceled.output)")
        #expect(try await ops.store.job(job.id)?.state == .canceled)
        #expect(try await ops.store.activeJobs().isEmpty)
        let events = try await ops.store.events(after: 0, limit: 1000).filter { $0.jobID == job.id }
        #expect(events.contains { $0.kind == .jobTransition && $0.to == .canceled && $0.actor == ActorName.localCLI().name }, "\(events)")
        #expect(events.contains { $0.kind == .fleetCommand && $0.actor != nil })
        // Hostile twins: a finished job, an unknown job.
        try await expectRefusal(cli, ["job", "cancel", job.id.rawValue], dir: dir, says: "already ended (canceled)")
        try await expectRefusal(cli, ["job", "cancel", "j0000000000000000"], dir: dir, says: "No job 'j0000000000000000'")
        #expect(try await ops.store.events(after: 0, limit: 1000).filter { $0.jobID == job.id }.count == events.count)
    }

    @Test func firmwareDeleteRemovesAnUnusedImageAndRefusesOneInUse() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (dir, ops) = try await fleet(cli)
        let (releaseID, _) = try await release(cli, dir, ops)
        try await expectRefusal(cli, ["firmware", "delete", "thermo@2.0"], dir: dir, says: "is used by release \(releaseID)")
        #expect(try await ops.store.firmware(id: "thermo@2.0") != nil)
        let unused = try #require(try await ops.store.firmware(id: "thermo@1.0"))
        let images = try FileImageStore(directory: ops.configuration.imagesDirectory)
        #expect(images.contains(sha256: unused.sha256))
        let deleted = try await cli.run(["firmware", "delete", "thermo@1.0", "--data-dir", dir])
        #expect(deleted.status == 0, "\(deleted.output)")
        #expect(try await ops.store.firmware(id: "thermo@1.0") == nil)
        #expect(!images.contains(sha256: unused.sha256))
        let event = try #require(try await ops.store.events(after: 0, limit: 1000).last)
        #expect(event.kind == .firmwareDeleted && event.firmwareID == "thermo@1.0" && event.actor == ActorName.localCLI().name)
        try await expectRefusal(cli, ["firmware", "delete", "thermo@1.0"], dir: dir, says: "No firmware 'thermo@1.0'")
    }

    @Test func decommissionCancelsTheJobRevokesAndClearsTheProfile() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (dir, ops) = try await fleet(cli)
        #expect(try await cli.run(["device", "provision", "d1", "--data-dir", dir]).status == 0)
        #expect(try await cli.run(["device", "group", "d1", "--add", "beta", "--data-dir", dir]).status == 0)
        let (_, job) = try await release(cli, dir, ops)
        let done = try #require(try await json(cli, ["device", "decommission", "d1"], dir: dir) as? [String: Any])
        #expect(done["canceled_job"] as? String == job.id.rawValue && (done["revocation"] as? [String: Any])?["mqtt"] as? Bool == true, "\(done)")
        #expect(try await ops.store.job(job.id)?.state == .canceled)
        let profile = try #require(try await ops.store.fleetProfiles()["d1"])
        #expect(profile.isRevoked && profile.groups.isEmpty && profile.lock == nil)
        #expect(try await ops.store.device("d1") != nil, "the registry keeps the device as the record of what it ran")
        #expect(!ops.brokerCredentials.provisionedUsers().contains("d1"))
        try await expectRefusal(cli, ["device", "decommission", "nobody"], dir: dir, says: "No device 'nobody'")
    }

    @Test func releaseWatchExitsNonZeroWhenAReleaseEndsBadly() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (dir, ops) = try await fleet(cli)
        try await ops.store.commit(StoreBatch(devices: [Device(id: "d2", product: "thermo", version: "1.0", online: false)]))
        // Succeeded: exit 0.
        let (good, goodJob) = try await release(cli, dir, ops)
        var finished = goodJob
        finished.state = .succeeded
        try await ops.store.commit(StoreBatch(jobs: [finished]))
        let ok = try await cli.run(["release", "watch", good.rawValue, "--data-dir", dir])
        #expect(ok.status == 0, "\(ok.output)")
        // A failed device: exit 2, saying so.
        let (bad, badJob) = try await release(cli, dir, ops, to: "d2")
        var machine = JobStateMachine(badJob)
        _ = machine.fail(.timeout, detail: "no progress", at: Date())
        try await ops.store.commit(StoreBatch(jobs: [machine.job]))
        let failed = try await cli.run(["release", "watch", bad.rawValue, "--data-dir", dir])
        #expect(failed.status == 2 && failed.output.contains("ended with 1 failed of 1"), "\(failed.output)")
        // A canceled one-off release (release cancel works for one-off releases): exit 2.
        try await ops.store.commit(StoreBatch(devices: [Device(id: "d3", product: "thermo", version: "1.0", online: false)]))
        let (third, _) = try await release(cli, dir, ops, to: "d3")
        let cancel = try await cli.run(["release", "cancel", third.rawValue, "--data-dir", dir])
        #expect(cancel.status == 0 && cancel.output.contains("canceled 1 jobs"), "\(cancel.output)")
        let canceled = try await cli.run(["release", "watch", third.rawValue, "--data-dir", dir])
        #expect(canceled.status == 2 && canceled.output.contains("was canceled"), "\(canceled.output)")
        try await expectRefusal(cli, ["release", "pause", third.rawValue], dir: dir, says: "one-off release")
    }
}
