import ArgumentParser
import Foundation
import Logging
import UpdraftApp
import UpdraftCore

@main
struct Updraft: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "updraft",
        abstract: "Firmware-update (OTA) gateway for IoT fleets.",
        discussion: """
            Updraft notifies devices of new firmware over MQTT, streams it to them in resumable \
            chunks, and records every step in a durable status store.

            Quick start:
              updraft keys generate
              updraft firmware add app.bin --product thermo --version 1.1.0
              updraft serve &
              updraft release create --firmware thermo@1.1.0 --product thermo
              updraft events --follow

            From another machine, through the gateway's HTTP API (same commands, same output):
              export UPDRAFT_SERVER=http://gateway:8080 UPDRAFT_TOKEN=<updraft token create ...>
              updraft release list
            (or --server URL --token T on each command; commands that work on the gateway's
            own files, like serve, keys and credentials, refuse it and say why)

            Or see it all at once: updraft demo
            """,
        version: UpdraftVersion.current,
        subcommands: [
            Serve.self, Keys.self, FirmwareCommand.self, ReleaseCommand.self, DeviceCommand.self, JobCommand.self, CredentialsCommand.self, TokenCommand.self, WebhookCommand.self, Stats.self, Events.self,
            Sim.self, Demo.self, Bench.self, Health.self,
        ]
    )
}

/// Options every command that touches the data shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file (default: Config/updraft.yaml when present). UPDRAFT_* environment variables override it.")
    var config: String?

    @Option(name: .long, help: "Data directory (overrides data_dir).")
    var dataDir: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level?

    @Option(name: .long, help: "Work on the gateway at this API URL (http://HOST:8080) instead of a local data directory (or UPDRAFT_SERVER).")
    var server: String?

    @Option(name: .long, help: "The API token for --server (or UPDRAFT_TOKEN); made with `updraft token create NAME --scope ...` on the gateway host.")
    var token: String?

    /// The gateway to work on remotely: --server, else UPDRAFT_SERVER; nil: the local data directory.
    var remoteServer: String? {
        let value = server ?? ProcessInfo.processInfo.environment["UPDRAFT_SERVER"]
        return value?.isEmpty == false ? value : nil
    }

    /// What a fleet command works on: the gateway's API with --server, else this machine's data directory.
    func fleet(_ access: UpdraftStoreFactory.Access = .existing) async throws -> any FleetClient {
        if let remoteServer {
            LogSetup.bootstrapOnce(level: logLevel ?? .warning)
            return try RemoteFleet(server: remoteServer, token: token ?? ProcessInfo.processInfo.environment["UPDRAFT_TOKEN"] ?? "")
        }
        return LocalFleet(try await operations(access))
    }

    /// For commands that work on this machine's files only: refused with --server, saying why.
    func load() async throws -> UpdraftConfiguration {
        if let remoteServer {
            throw UpdraftError(
                "local_only",
                "This command takes no --server (\(remoteServer)): \(Self.localOnlyReason()). Run it on the gateway host without --server and with UPDRAFT_SERVER unset."
            )
        }
        var configuration = try await UpdraftConfiguration.load(file: config)
        if let dataDir { configuration.dataDirectory = dataDir }
        if let logLevel { configuration.logLevel = logLevel }
        LogSetup.bootstrapOnce(level: configuration.logLevel, format: configuration.logFormat)
        let logger = Logger(label: "updraft.config")
        for warning in configuration.warnings { logger.warning("\(warning)") }
        return configuration
    }

    /// - Parameter access: `.existing` (the default) for commands that work on recorded
    ///   data: they never create a store, so a mistyped --data-dir is an error.
    func operations(_ access: UpdraftStoreFactory.Access = .existing) async throws -> Operations {
        let configuration = try await load()
        return try Operations(configuration: configuration, access: access, logger: Logger(label: "updraft"))
    }
}

extension GlobalOptions {
    /// Why the command being run is local only, from its name.
    static func localOnlyReason(_ arguments: [String] = CommandLine.arguments) -> String {
        let words = Set(arguments.dropFirst().prefix(3))
        let reasons: [(String, String)] = [
            ("serve", "it runs the gateway itself"), ("keys", "the release signing key it writes stays on this host"),
            ("credentials", "it writes the broker's password and PSK files, which only the gateway host has"),
            ("provision", "it writes the broker's password and PSK files, which only the gateway host has"),
            ("revoke", "it rewrites the broker's password, PSK and CRL files and signals the broker, on the gateway host only"),
            ("sim", "it runs simulated devices, which talk MQTT/CoAP, not the API"), ("demo", "it starts a whole gateway of its own"),
            ("bench", "it starts the gateways it measures"), ("health", "it checks a data directory and broker files on this host (remotely: curl URL/readyz)"),
            ("token", "the API lists tokens but does not make or revoke them: an admin does that on the gateway host"),
        ]
        return reasons.first { words.contains($0.0) }?.1 ?? "it works on the data directory, and the API has no call for it yet"
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

enum LogSetup {
    nonisolated(unsafe) private static var done = false
    /// Logs go to stderr so command output on stdout stays clean for scripts; as JSON
    /// lines with `log_format: json`.
    static func bootstrapOnce(level: Logger.Level, format: LogFormat = .text) {
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }
}

/// Turns our user-facing errors into a clean message and exit code 1.
func userFacing<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as UpdraftError {
        FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
        throw ExitCode(1)
    } catch let error as CocoaError {
        // One line naming the file, not Foundation's error dump.
        let path = (error.userInfo[NSFilePathErrorKey] as? String).map { " (\($0))" } ?? ""
        FileHandle.standardError.write(Data("error: \(error.localizedDescription)\(path)\n".utf8))
        throw ExitCode(1)
    }
}
