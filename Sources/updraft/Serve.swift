import ArgumentParser
import Logging
import UpdraftApp

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway (and, unless mqtt.broker.external is set, its mosquitto broker).",
        discussion: """
            Stops cleanly on SIGINT/SIGTERM: pending progress is written, the broker is stopped. \
            Jobs survive a crash: start it again and it carries on.
            """)

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await userFacing {
            let configuration = try await global.load()
            let app = try GatewayApp(configuration: configuration, logger: Logger(label: "updraft"))
            try await app.run()
        }
    }
}
