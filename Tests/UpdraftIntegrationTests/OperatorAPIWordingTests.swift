import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// A refusal tells API callers what to send in the API's own words (JSON fields, calls),
/// and CLI users in the CLI's: the same operation, two front ends.
@Suite(.timeLimit(.minutes(2))) struct OperatorAPIWordingTests {
    @Test func releaseRefusalsNameTheJSONFieldsOverHTTPAndTheOptionsOnTheCLI() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["w1"], version: "2.0", seed: 4)
            let unknown = try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","devices":["ghost"]}"#)
            let unverified = try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","devices":["w1"],"fleet":true}"#)
            #expect(unknown.json["code"] as? String == "unknown_devices", "\(unknown.text)")
            #expect(unverified.json["code"] as? String == "firmware_unverified", "\(unverified.text)")
            let unknownDetail = unknown.json["detail"] as? String ?? ""
            let unverifiedDetail = unverified.json["detail"] as? String ?? ""
            #expect(unknownDetail.contains(#""allow_unknown": true"#) && unknownDetail.contains("GET /v1/devices"), "\(unknownDetail)")
            #expect(unverifiedDetail.contains(#""force": true"#) && unverifiedDetail.contains("POST /v1/firmware/thermo@2.0/verify"), "\(unverifiedDetail)")
            for detail in [unknownDetail, unverifiedDetail] {
                #expect(!detail.contains("--") && !detail.contains("`updraft "), "CLI wording over HTTP: \(detail)")
            }
            // The CLI's operations keep the CLI's words.
            var order = ReleaseOrder(firmware: "thermo@2.0", target: .devices(["w1"]))
            order.fleet = true
            await #expect {
                try await api.ops.createRelease(order, naming: .commandLine)
            } throws: { ($0 as? UpdraftError)?.message.contains("--force") == true }
        }
    }
}
