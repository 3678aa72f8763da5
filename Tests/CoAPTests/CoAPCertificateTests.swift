import Foundation
import Logging
import Testing
import UpdraftTestSupport
import LoopbackPorts

@testable import CoAP

/// DTLS with certificates: libcoap's own client presents a certificate; the server
/// verifies it against its CA and hands the subject CN to the handler.
@Suite("DTLS with certificates", .timeLimit(.minutes(3)))
struct CoAPCertificateTests {
    /// A CA, a server certificate, a client certificate (CN `device-7`) under that CA, and
    /// one under another CA, made with the openssl command line.
    struct Certificates {
        let directory: URL
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

        static func make(in directory: URL) async throws -> Certificates {
            let script = """
                set -e
                key() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null; }
                sign() { openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days 2 -out "$1.crt" 2>/dev/null; }
                for ca in ca rogue; do
                  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout $ca.key -out $ca.crt -subj "/CN=$ca CA" 2>/dev/null
                done
                key server localhost; sign server ca
                key device device-7; sign device ca
                key intruder device-7; sign intruder rogue
                """
            let tool = try SpawnedProcess("/bin/sh", ["-c", "cd '\(directory.path)' && \(script)"], directory: directory)
            let status = try await tool.waitForExit(timeout: .seconds(60))
            guard status == 0 else { throw ToolFailure(description: "openssl failed (\(status)): \(tool.output)") }
            return Certificates(directory: directory)
        }
    }

    @Test("a client certificate signed by the CA names the peer; another CA's is refused; PSK still works beside it")
    func clientCertificates() async throws {
        try await withTemporaryDirectory { directory in
            let certs = try await Certificates.make(in: directory)
            let port = PortProbe.ephemeralUDPPort()
            var configuration = CoAPServer.Configuration(
                host: "127.0.0.1", port: nil, securePort: port,
                psk: CoAPServer.PSK { $0 == "psk-device" ? Array("psk-secret".utf8) : nil })
            configuration.pki = CoAPServer.PKI(
                caFile: certs.path("ca.crt"), certificateFile: certs.path("server.crt"), privateKeyFile: certs.path("server.key"))
            let server = CoAPServer(configuration: configuration, logger: testLogger)
            try server.addResource(
                CoAPResource(
                    path: "whoami",
                    handlers: [.get: .immediate { request in
                        let name = request.pskIdentity.map { "psk:\($0)" } ?? request.certificateName.map { "cert:\($0)" } ?? "anonymous"
                        return CoAPResponse(payload: Array(name.utf8), contentFormat: .textPlain)
                    }]))
            try server.start()
            defer { server.stop() }
            let uri = "coaps://127.0.0.1:\(port)/whoami"

            let trusted = try await runCoAPClient(
                ["-B", "10", "-c", certs.path("device.crt"), "-j", certs.path("device.key"), "-C", certs.path("ca.crt"), uri],
                directory: directory)
            #expect(trusted.output.contains("cert:device-7"), "\(trusted.output)")

            let rogue = try await runCoAPClient(
                ["-B", "5", "-c", certs.path("intruder.crt"), "-j", certs.path("intruder.key"), "-C", certs.path("ca.crt"), uri],
                directory: directory)
            #expect(!rogue.output.contains("cert:"), "a certificate from another CA must not get in: \(rogue.output)")

            let psk = try await runCoAPClient(["-B", "10", "-u", "psk-device", "-k", "psk-secret", uri], directory: directory)
            #expect(psk.output.contains("psk:psk-device"), "\(psk.output)")
        }
    }

    @Test("a missing certificate file fails the start with a clear error")
    func missingFiles() throws {
        var configuration = CoAPServer.Configuration(host: "127.0.0.1", port: nil, securePort: PortProbe.ephemeralUDPPort())
        configuration.pki = CoAPServer.PKI(caFile: "/nonexistent/ca.crt", certificateFile: "/nonexistent/s.crt", privateKeyFile: "/nonexistent/s.key")
        let server = CoAPServer(configuration: configuration, logger: testLogger)
        #expect {
            try server.start()
        } throws: { error in
            "\(error)".contains("/nonexistent/ca.crt")
        }
        server.stop()
    }
}
