import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftHTTP

/// `http.tls.*`: the API over HTTPS with a certificate made by openssl for 127.0.0.1.
@Suite(.timeLimit(.minutes(2))) struct HTTPSTests {
    @Test func theAPISpeaksHTTPSWhenACertificateIsConfigured() async throws {
        try await withTemporaryPath(prefix: "updraft-https") { dir in
            try SpawnedProcess.run("/usr/bin/openssl", [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            ])
            try await APIServer.with(tune: { $0.certificateFile = dir + "/cert.pem"; $0.keyFile = dir + "/key.pem" }, trusting: dir + "/cert.pem") { api in
                let health = try await api.get("/healthz")
                #expect(health.status == 200)
                let refused = try await api.get("/v1/firmware")
                #expect(refused.status == 401)
                let firmware = try await api.get("/v1/firmware", .read)
                #expect(firmware.status == 200)
                // Plain HTTP on the HTTPS port gets nothing.
                let plain = HTTPTestClient(port: api.port)
                await #expect(throws: (any Error).self) { _ = try await plain.get("/healthz") }
                await plain.shutdown()
            }
        }
    }

    @Test func halfATLSConfigurationIsRefused() {
        var settings = HTTPSettings()
        settings.certificateFile = "/x/cert.pem"
        let error = #expect(throws: UpdraftError.self) { try settings.validate() }
        #expect(error?.code == "config_invalid")
    }
}
