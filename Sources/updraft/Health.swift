import ArgumentParser
import UpdraftApp

/// `updraft health`: exit 0 when a gateway serves this data directory (the Docker HEALTHCHECK).
struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that a gateway serves this data directory: its lock, its broker, its CoAP ports.",
        discussion: """
            Exit 0 when a live process holds <data_dir>/updraft.lock, the managed mosquitto of \
            <data_dir>/broker runs and accepts TCP where the gateway connects to it (mqtt.broker.plain_port, else tls_port), and UDP sockets \
            are bound on coap.port and coap.secure_port (those not 0, when CoAP is on); exit 1 with \
            what failed otherwise. Reads only: it takes no lock and opens no store.
            """)
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await userFacing {
            for line in try GatewayHealth.check(try await global.load()) { print(line) }
        }
    }
}
