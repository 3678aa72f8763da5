import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport

/// The real `updraft serve` process stopped while a fleet reboots into its update, and
/// started again at once.
// Serialized: two fleets and two gateways at once would measure the machine, not the restart.
@Suite(.serialized, .timeLimit(.minutes(15))) struct QuickRestartTests {
    /// Issue 8 item 9: `updraft serve` killed (SIGKILL, or SIGTERM) while devices reboot
    /// after `installed`, and started again 0.1 s later (systemd's default): every job
    /// succeeds. The restarted gateway first hears the broker's replay of each rebooting
    /// device's retained announcement, still on the old version.
    ///
    /// `UPDRAFT_RESTART_DEVICES` and `UPDRAFT_RESTART_IMAGE_BYTES` scale it (the issue's
    /// run: 500 devices, 1 MiB; `make bench-restart`); the figures go to stdout.
    @Test(arguments: [SIGKILL, SIGTERM])
    func installsInFlightSurviveAQuickRestart(signal: Int32) async throws {
        let binary = try #require(ProcessRestartTests.updraftBinary, "build the updraft executable first (swift build --build-tests builds it)")
        let environment = ProcessInfo.processInfo.environment
        let count = environment["UPDRAFT_RESTART_DEVICES"].flatMap(Int.init) ?? 40
        let imageBytes = environment["UPDRAFT_RESTART_IMAGE_BYTES"].flatMap(Int.init) ?? 20_000
        let folder = try await ServeFolder("updraft-reboot", imageBytes: imageBytes, seed: 11)
        let (dir, ops) = (folder.path, folder.ops)
        let serve = { try ProcessRestartTests().serve(binary, dataDir: dir, port: folder.brokerPort) }
        var processes = [try serve()]
        defer { folder.remove(after: processes) }
        // Long enough that the restarted gateway subscribes while devices still reboot.
        let fleet = try await folder.startedFleet(count, registered: .seconds(90)) { $0.rebootDelay = .seconds(6) }
        let started = ContinuousClock.now
        let plan = try await ops.createRelease(firmwareID: folder.firmware.id, target: .product("thermo"), allowDowngrade: false)
        #expect(plan.jobs.count == count)
        // The installing/rebooting moment: a quarter of the fleet reported installed.
        var installedAtKill = 0
        try await eventually(timeout: .seconds(120), "devices to report installed") {
            let jobs = try await ops.store.jobs(release: plan.release.id)
            installedAtKill = jobs.filter { $0.state == .installed }.count
            return installedAtKill > 0 && installedAtKill + jobs.filter { $0.state == .succeeded }.count >= max(1, count / 4)
        }
        let first = processes[0]
        kill(first.pid, signal)
        #expect(await first.waitForExit(timeout: .seconds(30)))
        try await Task.sleep(for: .milliseconds(100))
        processes.append(try serve())

        let jobs: [Job]
        do {
            jobs = try await waitForAll(timeout: .seconds(240)) {
                let jobs = try await ops.store.jobs(release: plan.release.id)
                return jobs.allSatisfy { $0.state.isTerminal } ? jobs : nil
            }
        } catch {
            // Say where the unfinished jobs stand, so a failure can be diagnosed from the log.
            let open = try await ops.store.jobs(release: plan.release.id).filter { !$0.state.isTerminal }
            let states = Dictionary(grouping: open, by: { "\($0.state)" }).mapValues(\.count)
            print("restart-during-reboots unfinished=\(open.count) states=\(states.sorted { $0.key < $1.key }) first=\(open.prefix(3).map { "\($0.deviceID)" })")
            if let stuck = open.first {
                let trail = try await ops.store.events(after: 0, limit: 1_000_000).filter { $0.deviceID == stuck.deviceID }.suffix(12)
                for event in trail { print("restart-during-reboots trail \(event.sequence) \(event.kind) \(event.detail ?? "")") }
            }
            throw error
        }
        let elapsed = ContinuousClock.now - started
        let failed = jobs.filter { $0.state != .succeeded }
        let refused = try await ops.store.events(after: 0, limit: 1_000_000).filter { $0.kind == .jobRefused }.count
        print(
            "restart-during-reboots signal=\(signal == SIGKILL ? "KILL" : "TERM") devices=\(count) image_bytes=\(imageBytes)",
            "installed_at_kill=\(installedAtKill) succeeded=\(jobs.count - failed.count) failed=\(failed.count) job_refused_events=\(refused)",
            "release_to_all_done_s=\(String(format: "%.1f", Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))")
        #expect(failed.isEmpty, "\(failed.prefix(5).map { "\($0.deviceID): \($0.state) \($0.detail ?? "")" })")
        try await fleet.waitForAll(version: "2.0", timeout: .seconds(60))
        await fleet.stop()
        let last = processes[1]
        last.signal(SIGTERM)
        #expect(await last.waitForExit(timeout: .seconds(30)))
    }

    private func waitForAll<T>(timeout: Duration, _ probe: () async throws -> T?) async throws -> T {
        var found: T?
        try await eventually(timeout: timeout, "every job to end") {
            found = try await probe()
            return found != nil
        }
        return found!
    }
}
