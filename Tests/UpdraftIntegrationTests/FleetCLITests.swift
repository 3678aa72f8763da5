import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// The fleet commands of the real `updraft` binary against a data directory (no gateway:
/// the CLI writes the store, a gateway would act on it).
@Suite(.timeLimit(.minutes(3))) struct FleetCLITests {
    struct Run {
        let status: Int32
        let output: String
    }

    func updraft(_ binary: String, _ dir: String, _ arguments: String...) async throws -> Run {
        let output = dir + "/cli-\(UUID().uuidString.prefix(8)).log"
        let process = try ChildProcess(executable: binary, arguments: arguments + ["--data-dir", dir, "--log-level", "error"], outputFile: output)
        #expect(await process.waitForExit(timeout: .seconds(60)))
        return Run(status: (process.terminationStatus >> 8) & 0xff, output: (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    @Test func releaseDeviceFirmwareAndStatsCommands() async throws {
        let binary = try #require(ProcessRestartTests.updraftBinary, "build the updraft executable first (swift build --build-tests builds it)")
        let dir = try makeTemporaryDirectory(prefix: "updraft-cli").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/fw.bin", contents: Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }))

        #expect(try await updraft(binary, dir, "keys", "generate").status == 0)
        #expect(try await updraft(binary, dir, "firmware", "add", dir + "/fw.bin", "--product", "thermo", "--version", "2.0").status == 0)

        // The verification gate refuses, and says what to do next.
        let refused = try await updraft(binary, dir, "release", "create", "--firmware", "thermo@2.0", "--product", "thermo", "--fleet")
        #expect(refused.status == 1)
        #expect(refused.output.contains("updraft firmware verify thermo@2.0"))

        let verify = try await updraft(binary, dir, "firmware", "verify", "thermo@2.0", "--devices", "bench-1")
        #expect(verify.status == 0, "\(verify.output)")
        #expect(try await updraft(binary, dir, "firmware", "show", "thermo@2.0").output.contains("verification: verifying"))

        let created = try await updraft(
            binary, dir, "release", "create", "--firmware", "thermo@2.0", "--groups", "beta", "--stages", "10,50,100",
            "--success-threshold", "0.9", "--error-threshold", "0.2", "--on-error", "abort", "--retry-interval", "5m",
            "--max-retries", "2", "--rate", "60", "--gradual", "--force")
        #expect(created.status == 0, "\(created.output)")
        let id = try #require(created.output.split(separator: "\n").first { $0.hasPrefix("release: ") }?.dropFirst("release: ".count))
        #expect(created.output.contains("forced"))

        #expect(try await updraft(binary, dir, "release", "pause", String(id)).output.contains("paused by the operator"))
        let advance = try await updraft(binary, dir, "release", "advance", String(id))
        #expect(advance.status == 1)
        #expect(advance.output.contains("updraft release resume"))
        #expect(try await updraft(binary, dir, "release", "resume", String(id)).status == 0)
        #expect(try await updraft(binary, dir, "release", "advance", String(id)).output.contains("stage 2"))
        #expect(try await updraft(binary, dir, "release", "list").output.contains(String(id)))
        #expect(try await updraft(binary, dir, "release", "show", String(id)).output.contains("stage:    50%"))
        #expect(try await updraft(binary, dir, "release", "watch", String(id), "--once").output.contains("succeeded 0"))

        #expect(try await updraft(binary, dir, "device", "group", "bench-1", "--add", "beta,lab").output.contains("groups beta,lab"))
        #expect(try await updraft(binary, dir, "device", "dev", "bench-1").status == 0)
        #expect(try await updraft(binary, dir, "device", "lock", "bench-1", "thermo@2.0").status == 0)
        let shown = try await updraft(binary, dir, "device", "show", "bench-1")
        #expect(shown.output.contains("should run:  thermo@2.0: locked (now)"), "\(shown.output)")
        #expect(try await updraft(binary, dir, "device", "unlock", "bench-1").status == 0)
        let again = try await updraft(binary, dir, "device", "unlock", "bench-1")
        #expect(again.status == 1)
        #expect(again.output.contains("not locked"))
        #expect(try await updraft(binary, dir, "device", "list").output.contains("development"))

        #expect(try await updraft(binary, dir, "release", "cancel", String(id)).output.contains("canceled"))
        #expect(try await updraft(binary, dir, "stats", "versions").status == 0)
        #expect(try await updraft(binary, dir, "release", "create", "--help").output.contains("--source-versions"))
    }
}
