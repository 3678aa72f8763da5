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

    func load() async throws -> UpdraftConfiguration {
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
