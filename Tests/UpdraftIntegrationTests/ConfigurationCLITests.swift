import Foundation
import Testing
import UpdraftApp
import UpdraftCore

/// Bad configuration is refused with the key's name (issue 8, item 13), through the real
/// binary: a wrong type or an out-of-range value stops the command with one line naming
/// the key and the value; an unknown key warns; no Foundation error dumps.
// Serialized: each test starts several updraft processes; run side by side they
// starve the rest of the suite on a 2-core machine.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ConfigurationCLITests {
    static let badValues: [(yaml: String, key: String, value: String)] = [
        ("mqtt:\n  broker:\n    port: \"abc\"\n", "mqtt.broker.port", "abc"),
        ("mqtt:\n  broker:\n    port: 21001.5\n", "mqtt.broker.port", "21001.5"),
        ("coap:\n  enabled: maybe\n", "coap.enabled", "maybe"),
        ("log_level: loud\n", "log_level", "loud"),
        ("store: 5\n", "store", "5"),
        ("mqtt:\n  max_control_bytes: 0\n", "mqtt.max_control_bytes", "0"),
        ("mqtt:\n  broker:\n    port: 70000\n", "mqtt.broker.port", "70000"),
    ]

    @Test(arguments: badValues.indices)
    func aBadValueStopsTheCommandNamingTheKey(_ index: Int) async throws {
        let (yaml, key, value) = Self.badValues[index]
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        // The configuration is read before the data directory is looked at.
        let dir = cli.logs + "/data"
        let config = cli.logs + "/updraft.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let run = try await cli.run(["release", "list", "--config", config, "--data-dir", dir])
        #expect(run.status == 1, "\(yaml) was accepted: \(run.output)")
        #expect(run.errors.count == 1, "\(run.output)")
        #expect(run.errors.first?.contains(key) == true, "\(run.output)")
        #expect(run.errors.first?.contains("'\(value)'") == true, "\(run.output)")
    }

    @Test func aBadEnvironmentValueStopsServeNamingTheVariable() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = cli.logs + "/data"
        // serve must not fall back to 1883: it stops before starting anything.
        let run = try await cli.run(
            ["serve", "--data-dir", dir], environment: ["UPDRAFT_MQTT_BROKER_PORT": "abc", "UPDRAFT_COAP_ENABLED": "false"],
            timeout: .seconds(20))
        #expect(run.status == 1, "\(run.output)")
        #expect(run.errors.first?.contains("UPDRAFT_MQTT_BROKER_PORT") == true, "\(run.output)")
        #expect(run.errors.first?.contains("'abc'") == true, "\(run.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/broker/mosquitto.pid"))
    }

    @Test func anUnknownKeyWarnsAndTheCommandRuns() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = try await cli.dataDirectory()
        let config = cli.logs + "/updraft.yaml"
        try "mqtt:\n  brokr:\n    port: 1884\n".write(toFile: config, atomically: true, encoding: .utf8)
        let run = try await cli.run(
            ["firmware", "list", "--config", config, "--data-dir", dir, "--log-level", "warning"],
            environment: ["UPDRAFT_MQTT_BROKR_PORT": "1884"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("unknown configuration key mqtt.brokr.port"), "\(run.output)")
        #expect(run.output.contains("environment variable UPDRAFT_MQTT_BROKR_PORT names no configuration key"), "\(run.output)")
    }

    /// Every key documented in Config/updraft.yaml is one updraft reads (and validates).
    @Test func theShippedConfigurationHasNoUnknownKeys() async throws {
        let file = Peers.packageRoot.appendingPathComponent("Config/updraft.yaml").path
        let configuration = try await UpdraftConfiguration.load(file: file)
        // (The test process's own UPDRAFT_* variables, such as UPDRAFT_TEST_LOG, do not count.)
        #expect(configuration.warnings.filter { !$0.hasPrefix("environment variable") } == [])
    }

    @Test func fileSystemMistakesAreOneLineErrors() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let file = cli.logs + "/a-file"
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let emptyDataDir = cli.logs + "/empty-data-dir.yaml"
        try "data_dir: \"\"\n".write(toFile: emptyDataDir, atomically: true, encoding: .utf8)
        // A data directory where serve cannot write what it needs (as when it is read-only):
        // its broker folder is a file.
        let blocked = try await cli.dataDirectory()
        try "x".write(toFile: blocked + "/broker", atomically: true, encoding: .utf8)
        let cases: [(arguments: [String], says: String)] = [
            (["serve", "--data-dir", blocked], blocked + "/broker"),
            (["serve", "--data-dir", file], "is a file"),
            (["firmware", "add", file, "--product", "p", "--version", "1.0", "--data-dir", file], "is a file"),
            (["release", "list", "--data-dir", file], "is a file"),
            (["release", "list", "--config", cli.logs], "is a folder"),
            (["serve", "--config", emptyDataDir], "data_dir is empty"),
            (["firmware", "list", "--config", emptyDataDir], "data_dir is empty"),
        ]
        for (arguments, says) in cases {
            let run = try await cli.run(arguments, environment: ["UPDRAFT_COAP_ENABLED": "false"], timeout: .seconds(20))
            let command = arguments.joined(separator: " ")
            #expect(run.status == 1, "\(command): \(run.output)")
            #expect(run.errors.count == 1 && run.errors.first?.contains(says) == true, "\(command): \(run.output)")
            #expect(!run.output.contains("Domain="), "\(command) dumped an NSError: \(run.output)")
        }
    }
}
