import Foundation
import LoopbackPorts
import Synchronization
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftHTTP
import UpdraftTestSupport

/// The CLI as an API client: the same `updraft` binary run on the data directory and, with
/// `--server URL --token T`, on the real HTTP API over that same data directory; and what
/// it says when the token, the scope, the server or the command is wrong.
@Suite(.serialized) struct RemoteCLITests {
    /// The fields `--json` prints locally that the API does not carry (README "Use it remotely").
    static let localOnlyFields: Set<String> = ["md5", "verified_by", "failed_devices"]

    @Test func everyFleetCommandPrintsTheSameLocallyAndRemotely() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        try await OperatorAPIServer.with { api in
            let (local, remote) = (Self.local(api), Self.remote(api, .admin))
            try await api.announce(["d1", "d2", "d3"])
            let added = try await cli.run(["firmware", "add", try Self.image(cli, "fw1", 4096), "--product", "thermo", "--version", "1.0"] + local)
            #expect(added.status == 0, "\(added.output)")
            let uploaded = try await cli.run(["firmware", "add", try Self.image(cli, "fw2", 20_000), "--product", "thermo", "--version", "2.0"] + remote)
            #expect(uploaded.status == 0 && uploaded.output.contains("firmware: thermo@2.0"), "\(uploaded.output)")
            let oneOff = try await Self.quiet(cli, ["release", "create", "--firmware", "thermo@2.0", "--devices", "d1,d2", "-q"] + remote)
            let fleet = try await Self.quiet(cli, ["release", "create", "--firmware", "thermo@1.0", "--product", "thermo", "--fleet", "--force", "-q"] + local)
            let job = try await Self.jobOf("d1", in: oneOff, cli, remote)
            let hook = try await cli.run(["webhook", "add", "http://127.0.0.1:9/hook", "--secret", "0123456789abcdef", "--kinds", "job.transition"] + remote)
            #expect(hook.status == 0 && hook.output.contains("Webhook 1 added"), "\(hook.output)")
            try await Self.changeDevices(cli, local: local, remote: remote)
            let reads: [[String]] = [
                ["device", "list", "--json"], ["device", "list", "--group", "lab", "--json"], ["device", "list", "--state", "queued", "--json"],
                ["device", "show", "d1", "--json"], ["device", "show", "d3", "--history", "2", "--json"], ["job", "show", job, "--json"],
                ["stats", "versions", "--json"], ["webhook", "list", "--json"], ["webhook", "show", "1", "--json"],
                ["firmware", "list", "--json"], ["firmware", "list", "--product", "thermo", "--json"], ["firmware", "show", "thermo@2.0", "--json"],
                ["release", "list", "--json"], ["release", "show", oneOff, "--json"], ["release", "show", fleet, "--json"],
                ["release", "watch", oneOff, "--once", "--json"], ["events", "--json"], ["events", "--after", "3"], ["token", "list", "--json"],
            ]
            for read in reads { try await Self.expectSame(cli, read, local: local, remote: remote) }
            let jobCanceled = try await cli.run(["job", "cancel", job] + remote)
            #expect(jobCanceled.status == 0 && jobCanceled.output.contains("job \(job): canceled"), "\(jobCanceled.output)")
            try await Self.expectSame(cli, ["job", "show", job, "--json"], local: local, remote: remote)
            let canceled = try await cli.run(["release", "cancel", oneOff] + remote)
            #expect(canceled.status == 0 && canceled.output.contains("canceled 1 jobs"), "\(canceled.output)")
            let removed = try await cli.run(["webhook", "remove", "1"] + remote)
            #expect(removed.status == 0 && removed.output.contains("Webhook 1 removed (http://127.0.0.1:9/hook)"), "\(removed.output)")
            let unlocked = try await cli.run(["device", "unlock", "d3"] + remote)
            #expect(unlocked.status == 0 && unlocked.output.contains("was thermo@1.0"), "\(unlocked.output)")
            try await Self.expectSame(cli, ["release", "show", oneOff, "--json"], local: local, remote: remote)
            let deleted = try await cli.run(["firmware", "delete", "thermo@2.0"] + remote)
            #expect(deleted.status == 1 && deleted.output.contains("409 firmware_in_use"), "a released firmware stays: \(deleted.output)")
            // Who did it: the token over the API, the OS user locally.
            let events = try await api.ops.store.events(after: 0, limit: 1000)
            #expect(events.contains { $0.kind == .releaseCreated && $0.actor == "token:t-admin" })
            #expect(events.contains { $0.kind == .releaseCreated && $0.actor?.hasPrefix("cli:") == true })
        }
    }

    @Test func aWrongTokenIsRefusedWithWhatToDo() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        try await OperatorAPIServer.with { api in
            let run = try await cli.run(["firmware", "list", "--server", Self.url(api), "--token", "not-a-token"])
            #expect(run.status == 1)
            #expect(run.errors.count == 1 && run.output.contains("401 unauthorized") && run.output.contains("updraft token create"), "\(run.output)")
            let missing = try await cli.run(["firmware", "list"], environment: ["UPDRAFT_SERVER": Self.url(api)])
            #expect(missing.status == 1 && missing.output.contains("UPDRAFT_TOKEN"), "\(missing.output)")
            // The environment variables work as the options do.
            let viaEnvironment = try await cli.run(
                ["token", "list", "--json"], environment: ["UPDRAFT_SERVER": Self.url(api), "UPDRAFT_TOKEN": api.tokens[.admin]!])
            #expect(viaEnvironment.status == 0 && viaEnvironment.output.contains("t-read"), "\(viaEnvironment.output)")
            #expect(!viaEnvironment.output.contains("names no configuration key"), "UPDRAFT_SERVER/TOKEN are not configuration keys")
        }
    }

    @Test func aReadTokenCannotChangeAnything() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["d1"], version: "2.0", seed: 3)
            let read = Self.remote(api, .read)
            let create = try await cli.run(["release", "create", "--firmware", "thermo@2.0", "--devices", "d1"] + read)
            #expect(create.status == 1 && create.output.contains("403 insufficient_scope") && create.output.contains("needs operate"), "\(create.output)")
            let delete = try await cli.run(["firmware", "delete", "thermo@2.0"] + Self.remote(api, .operate))
            #expect(delete.status == 1 && delete.output.contains("needs admin"), "\(delete.output)")
            #expect(try await api.ops.store.releases().isEmpty)
            #expect(try await api.ops.store.firmwareList(product: nil).count == 1)
            let list = try await cli.run(["firmware", "list", "--json"] + read)
            #expect(list.status == 0, "a read token reads: \(list.output)")
        }
    }

    @Test func aGatewayThatIsDownIsSaidPlainly() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let port = PortProbe.freePort()
        let started = ContinuousClock.now
        let run = try await cli.run(["release", "list", "--server", "http://127.0.0.1:\(port)", "--token", "t"], timeout: .seconds(30))
        #expect(run.status == 1)
        #expect(ContinuousClock.now - started < .seconds(20), "told at once, not after retries")
        #expect(run.output.contains("Cannot reach the gateway at http://127.0.0.1:\(port)") && run.output.contains("updraft health"), "\(run.output)")
        #expect(run.output.split(separator: "\n").count == 1, "one line, no stack trace: \(run.output)")
        let bad = try await cli.run(["release", "list", "--server", "127.0.0.1:\(port)", "--token", "t"])
        #expect(bad.status == 1 && bad.output.contains("not an http:// or https:// URL"), "\(bad.output)")
    }

    @Test func localOnlyCommandsRefuseServerAndSayWhy() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = cli.logs + "/untouched"
        let server = ["--server", "http://127.0.0.1:9", "--token", "t", "--data-dir", dir]
        let cases: [([String], String)] = [
            (["keys", "generate"], "release signing key"), (["serve"], "runs the gateway itself"),
            (["token", "create", "x", "--scope", "read"], "does not make or revoke them"),
            (["credentials", "show"], "broker's password and PSK files"), (["health"], "curl URL/readyz"),
        ]
        for (command, why) in cases {
            let run = try await cli.run(command + server)
            #expect(run.status == 1, "\(command): \(run.output)")
            #expect(run.output.contains("takes no --server") && run.output.contains(why), "\(command): \(run.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir), "nothing was made locally")
    }

    @Test func anImageOverTheGatewaysLimitGets413() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        try await OperatorAPIServer.with { api in
            let big = try Self.image(cli, "big", Int(OperatorAPIServer.maxImageBytes) * 4)
            let run = try await cli.run(["firmware", "add", big, "--product", "thermo", "--version", "9.0"] + Self.remote(api, .operate))
            #expect(run.status == 1 && run.output.contains("413 firmware_too_large") && run.output.contains("firmware.max_image_bytes"), "\(run.output)")
            #expect(try await api.ops.store.firmwareList(product: nil).isEmpty)
        }
    }

    @Test func versionIsPrinted() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let run = try await cli.run(["--version"])
        #expect(run.status == 0 && run.output.trimmingCharacters(in: .whitespacesAndNewlines) == UpdraftVersion.current, "\(run.output)")
    }
}

extension RemoteCLITests {
    static func url(_ api: OperatorAPIServer) -> String { "http://127.0.0.1:\(api.client.port)" }
    static func local(_ api: OperatorAPIServer) -> [String] { ["--data-dir", api.directory, "--log-level", "error"] }
    static func remote(_ api: OperatorAPIServer, _ scope: TokenScope) -> [String] {
        ["--server", url(api), "--token", api.tokens[scope]!, "--log-level", "error"]
    }

    static func image(_ cli: CLIProcess, _ name: String, _ size: Int) throws -> String {
        let path = cli.logs + "/\(name).bin"
        try Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) ^ UInt8(name.count) }).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The job of `device` in a one-off release, from `release show --json`.
    static func jobOf(_ device: String, in release: String, _ cli: CLIProcess, _ remote: [String]) async throws -> String {
        let shown = try await cli.run(["release", "show", release, "--json"] + remote)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(shown.output.utf8)) as? [String: Any], "\(shown.output)")
        let rows = try #require(report["devices"] as? [[String: Any]])
        return try #require(rows.first { $0["device"] as? String == device }?["job"] as? String, "\(rows)")
    }

    /// Groups, development flag and a lock, set over the API and locally.
    static func changeDevices(_ cli: CLIProcess, local: [String], remote: [String]) async throws {
        let grouped = try await cli.run(["device", "group", "d2", "--add", "lab,bench"] + remote)
        #expect(grouped.status == 0 && grouped.output.contains("groups bench,lab"), "\(grouped.output)")
        let ungrouped = try await cli.run(["device", "group", "d2", "--remove", "bench"] + local)
        #expect(ungrouped.status == 0 && ungrouped.output.contains("groups lab"), "\(ungrouped.output)")
        let dev = try await cli.run(["device", "dev", "d2"] + remote)
        #expect(dev.status == 0 && dev.output.contains("development device"), "\(dev.output)")
        let locked = try await cli.run(["device", "lock", "d3", "thermo@1.0", "--at-next-session"] + remote)
        #expect(locked.status == 0 && locked.output.contains("locked to thermo@1.0"), "\(locked.output)")
        let unknown = try await cli.run(["device", "lock", "nobody", "thermo@1.0"] + remote)
        #expect(unknown.status == 1, "a device that never connected is refused: \(unknown.output)")
    }

    /// Runs a `-q` command and returns its one line of output.
    static func quiet(_ cli: CLIProcess, _ arguments: [String]) async throws -> String {
        let run = try await cli.run(arguments)
        try #require(run.status == 0, "\(arguments): \(run.output)")
        return run.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `read` locally and remotely: the same JSON, but for ``localOnlyFields``.
    static func expectSame(_ cli: CLIProcess, _ read: [String], local: [String], remote: [String]) async throws {
        let (here, there) = (try await cli.run(read + local), try await cli.run(read + remote))
        #expect(here.status == 0 && there.status == 0, "\(read): \(here.output) / \(there.output)")
        let (a, b) = (try normalized(here.output), try normalized(there.output))
        #expect(!a.isEmpty && a == b, "updraft \(read.joined(separator: " ")):\nlocal:  \(a)\nremote: \(b)")
    }

    /// Each JSON document of the output, without the local-only fields, keys sorted.
    static func normalized(_ output: String) throws -> [String] {
        try output.split(separator: "\n").filter { $0.hasPrefix("{") || $0.hasPrefix("[") }.map { line in
            let value = strip(try JSONSerialization.jsonObject(with: Data(line.utf8)))
            return String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]), as: UTF8.self)
        }
    }

    static func strip(_ value: Any) -> Any {
        if let object = value as? [String: Any] {
            return object.filter { !localOnlyFields.contains($0.key) }.mapValues(strip)
        }
        if let array = value as? [Any] { return array.map(strip) }
        return value
    }
}
