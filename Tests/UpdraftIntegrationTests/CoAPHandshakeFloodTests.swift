import Foundation
import Testing
import UpdraftApp
import UpdraftCoAP
import UpdraftCore
import UpdraftTestSupport
import UpdraftTools

/// Issue 8 item 7: a flood of DTLS ClientHellos from changing source ports (spoofable,
/// never answered) does not lock a real device out of its DTLS handshake.
@Suite(.timeLimit(.minutes(3))) struct CoAPHandshakeFloodTests {
    @Test func aDeviceCompletesItsDTLSHandshakeDuringAClientHelloFlood() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let coap = h.stack.configuration.coap
            let key = try PSKFile.issue(for: "flooded-1", path: h.stack.configuration.resolvedPSKFile)
            // Far more than libcoap's 100 handshakes in progress, from a new port every 2
            // datagrams, for 20 s: long enough to outlast the device's handshake on a loaded
            // CI machine. ClientHellos only: garbage to the plain port (a plain-UDP session
            // per new port, kept by libcoap) is the README's open limit, and the log
            // collapsing is CoAPLogRepeatsTests' subject.
            let flood = Flooder(
                hellos: 40_000, garbage: 0, rate: 2_000, perPort: 2, securePort: coap.securePort, plainPort: coap.port)
            let sender = Thread { flood.run() }
            sender.start()
            defer { flood.stop() }
            try await eventually(timeout: .seconds(20), "the flood under way") { flood.sent.0 >= 1_000 }
            let hello = try await tool.run(
                ["-u", "flooded-1", "-k", key, "-m", "post", "-e", #"{"product":"thermo","version":"1.0"}"#],
                uri: "coaps://127.0.0.1:\(coap.securePort)/announce")
            #expect(!flood.finished, "the flood ended before the handshake; it proves nothing")
            #expect(hello.text == "{}", "no answer during the flood: \(hello.log.suffix(500))")
            flood.stop()
            try await h.waitUntilRegistered(1)
        }
    }
}
