import Foundation
import LoopbackPorts
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftStore
import UpdraftTestSupport

/// Small refusals from issue 8, item 14, through the real binary: a command that cannot do
/// what was asked exits non-zero, says why, and records nothing.
// Serialized: each test starts several updraft processes; run side by side they
// starve the rest of the suite on a 2-core machine.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ReleaseSafetyCLITests {
    /// A data directory with firmware thermo@1.0 and thermo@2.0, and the store beside it.
    func catalog(_ cli: CLIProcess) async throws -> (dir: String, ops: Operations) { try await cli.thermoCatalog() }

    @Test func versionsMadeOfDotsAreRefused() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (dir, ops) = try await catalog(cli)
        for version in [".", "..", "..."] {
            let run = try await cli.run(["firmware", "add", cli.logs + "/fw-1.0.bin", "--product", "thermo", "--version", version, "--data-dir", dir])
            #expect(run.status == 1, "version '\(version)' was accepted: \(run.output)")
            #expect(run.errors.first?.contains("Invalid version '\(version)'") == true, "\(run.output)")
        }
        #expect(try await ops.store.firmwareList(product: nil).map(\.version.rawValue).sorted() == ["1.0", "2.0"])
    }

    @Test func aNegativePercentSaysWhatIsWrong() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (dir, ops) = try await catalog(cli)
        let run = try await cli.run(["release", "create", "--firmware", "thermo@2.0", "--product", "thermo", "--percent", "-5", "--force", "--data-dir", dir])
        #expect(run.status != 0)
        #expect(!run.output.contains("Missing value"), "\(run.output)")
        #expect(run.output.contains("--percent must be more than 0 and at most 100 (got -5)"), "\(run.output)")
        #expect(try await ops.store.releases().isEmpty)
    }

    @Test func aDowngradeWithoutAllowDowngradeIsRefusedAndCreatesNothing() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (dir, ops) = try await catalog(cli)
        // A device that announced 2.0 (as the gateway records it).
        try await ops.store.commit(StoreBatch(devices: [Device(id: "d1", product: "thermo", version: "2.0", online: true)]))
        for target in [["--devices", "d1"], ["--product", "thermo"]] {
            let run = try await cli.run(["release", "create", "--firmware", "thermo@1.0"] + target + ["--data-dir", dir])
            #expect(run.status == 1, "\(target): \(run.output)")
            #expect(run.errors.first?.contains("d1 runs 2.0") == true, "\(run.output)")
            #expect(run.errors.first?.contains("--allow-downgrade") == true, "\(run.output)")
        }
        #expect(try await ops.store.releases().isEmpty, "a refused downgrade left a release")
        let allowed = try await cli.run(["release", "create", "--firmware", "thermo@1.0", "--devices", "d1", "--allow-downgrade", "--data-dir", dir])
        #expect(allowed.status == 0, "\(allowed.output)")
        #expect(allowed.output.contains("jobs:    1"))
    }

    @Test func unknownDeviceIdsAreRefusedUnlessAllowed() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (dir, ops) = try await catalog(cli)
        try await ops.store.commit(StoreBatch(devices: [Device(id: "d1", product: "thermo", version: "1.0", online: true)]))
        let refused: [[String]] = [
            ["release", "create", "--firmware", "thermo@2.0", "--devices", "d1,ghost-1"],
            ["release", "create", "--firmware", "thermo@2.0", "--devices", "ghost-1", "--fleet", "--force"],
            ["release", "create", "--firmware", "thermo@2.0", "--product", "thermo", "--select-devices", "ghost-1", "--force"],
            ["device", "lock", "ghost-1", "thermo@2.0"],
        ]
        for arguments in refused {
            let run = try await cli.run(arguments + ["--data-dir", dir])
            #expect(run.status == 1, "\(arguments.joined(separator: " ")): \(run.output)")
            #expect(run.errors.first?.contains("ghost-1") == true, "\(run.output)")
            #expect(run.errors.first?.contains("--allow-unknown") == true, "\(run.output)")
        }
        #expect(try await ops.store.device("ghost-1") == nil, "a phantom device was added")
        #expect(try await ops.store.releases().isEmpty)

        let allowed = try await cli.run(["release", "create", "--firmware", "thermo@2.0", "--devices", "ghost-1", "--allow-unknown", "--data-dir", dir])
        #expect(allowed.status == 0, "\(allowed.output)")
        #expect(try await cli.run(["device", "lock", "ghost-2", "thermo@2.0", "--allow-unknown", "--data-dir", dir]).status == 0)
    }

    @Test func aMissingOrDamagedImageIsRefusedAtReleaseAndReportedAtGatewayStart() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (dir, ops) = try await catalog(cli)
        try await ops.store.commit(StoreBatch(devices: [Device(id: "d1", product: "thermo", version: "1.0", online: true)]))
        let firmware = try await ops.firmware("thermo@2.0")
        let image = try FileImageStore(directory: ops.configuration.imagesDirectory).path(sha256: firmware.sha256)
        let original = try Data(contentsOf: URL(fileURLWithPath: image))

        try Data(repeating: 9, count: original.count).write(to: URL(fileURLWithPath: image))
        let damaged = try await cli.run(["release", "create", "--firmware", "thermo@2.0", "--devices", "d1", "--data-dir", dir])
        #expect(damaged.status == 1, "\(damaged.output)")
        #expect(damaged.errors.first?.contains("does not match its digest") == true, "\(damaged.output)")
        try FileManager.default.removeItem(atPath: image)
        for arguments in [
            ["release", "create", "--firmware", "thermo@2.0", "--devices", "d1"], ["device", "lock", "d1", "thermo@2.0"],
        ] {
            let missing = try await cli.run(arguments + ["--data-dir", dir])
            #expect(missing.status == 1, "\(missing.output)")
            #expect(missing.errors.first?.contains("missing") == true, "\(missing.output)")
        }
        #expect(try await ops.store.releases().isEmpty)

        // An image that goes missing after its release: the gateway says so when it starts.
        try original.write(to: URL(fileURLWithPath: image))
        let released = try await cli.run(["release", "create", "--firmware", "thermo@2.0", "--devices", "d1", "--data-dir", dir])
        try #require(released.status == 0, "\(released.output)")
        try FileManager.default.removeItem(atPath: image)
        let port = PortProbe.freePort()
        let (gateway, log) = try cli.start(
            ["serve", "--data-dir", dir, "--log-level", "warning"],
            environment: servedBroker(port: port).merging(["UPDRAFT_COAP_ENABLED": "false"]) { $1 })
        defer { killAll([gateway], brokerOf: dir) }
        try await eventually(timeout: .seconds(30), "the gateway to report the missing image") {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("firmware image of active jobs is unusable")
        }
        #expect(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("thermo@2.0"))
        gateway.signal(SIGTERM)
        #expect(await gateway.waitForExit(timeout: .seconds(30)))
    }
}
