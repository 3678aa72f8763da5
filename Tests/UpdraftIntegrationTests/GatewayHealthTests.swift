import Foundation
import LoopbackPorts
import Testing
import UpdraftApp
import UpdraftTestSupport

/// `updraft health` (the Docker HEALTHCHECK) through the real binary: exit 0 beside a
/// running gateway, exit 1 naming the failure when no gateway holds the data directory or
/// when the configured broker or CoAP port is not served.
@Suite(.serialized, .timeLimit(.minutes(3))) struct GatewayHealthTests {
    @Test func healthPassesOnlyWhenTheGatewayItsBrokerAndItsCoAPPortsServe() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let idle = try await cli.dataDirectory()
        let nobody = try await cli.run(["health", "--data-dir", idle, "--log-level", "error"])
        #expect(nobody.status == 1 && nobody.errors.first?.contains("No gateway holds") == true, "\(nobody.output)")

        try await Harness.with { h in
            let c = h.stack.configuration
            let ports = [
                "UPDRAFT_MQTT_BROKER_TLS_PORT": "\(c.mqtt.broker.tlsPort)", "UPDRAFT_MQTT_BROKER_PLAIN_PORT": "\(c.mqtt.broker.plainPort)", "UPDRAFT_COAP_PORT": "\(c.coap.port)",
                "UPDRAFT_COAP_SECURE_PORT": "\(c.coap.securePort)",
            ]
            func health(_ changes: [String: String] = [:]) async throws -> CLIProcess.Run {
                try await cli.run(
                    ["health", "--data-dir", h.stack.directory, "--log-level", "error"],
                    environment: ports.merging(changes) { _, new in new })
            }
            // As Docker's HEALTHCHECK does, asked again while the gateway starts (under load
            // its CoAP sockets may be bound a moment after startGateway returns).
            var ok = try await health()
            try await eventually(timeout: .seconds(30), "updraft health to pass: \(ok.output)") {
                ok = try await health()
                return ok.status == 0
            }
            #expect(ok.output.contains("broker: pid") && ok.output.contains("coap: UDP \(c.coap.securePort) bound"), "\(ok.output)")
            // The same gateway, asked about ports it does not serve.
            let wrongBroker = try await health(["UPDRAFT_MQTT_BROKER_TLS_PORT": "\(PortProbe.freePort())"])
            #expect(wrongBroker.status == 1 && wrongBroker.errors.count == 1, "\(wrongBroker.output)")
            let wrongCoAP = try await health(["UPDRAFT_COAP_SECURE_PORT": "\(PortProbe.freeUDPPort())"])
            #expect(wrongCoAP.status == 1 && wrongCoAP.errors.first?.contains("CoAP UDP port") == true, "\(wrongCoAP.output)")
        }
    }
}
