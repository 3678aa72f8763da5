import Foundation
import Testing
import UpdraftTestSupport

/// Every error code a device can be sent is in its protocol article: the codes are read
/// from the sources that answer devices (`UpdraftError("code", ...)` literals), so a new
/// code without a line in the article fails here.
@Suite struct ProtocolArticleTests {
    /// The literal error codes in the Swift files under `folders` (or the files named).
    static func codes(in folders: [String]) throws -> Set<String> {
        try SourceScan.literals(#"UpdraftError\(\s*"([a-z_]+)""#, in: folders)
    }

    @Test func theMQTTArticleListsEveryCodeAnMQTTDeviceCanGet() throws {
        let codes = try Self.codes(in: ["Sources/UpdraftCore/Engine", "Sources/UpdraftWire", "Sources/UpdraftMQTT"])
            // Its topic names no device, so there is nobody to answer.
            .subtracting(["unknown_topic"])
        #expect(codes.count >= 10, "the scan found too few codes: \(codes.sorted())")
        let text = try SourceScan.text("Sources/UpdraftMQTT/Documentation.docc/MQTTDeviceProtocol.md")
        let missing = codes.filter { !text.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "error codes missing from MQTTDeviceProtocol.md: \(missing)")
    }

    /// The HTTP firmware download answers MQTT and CoAP devices alike (the offer's `url`).
    @Test func bothArticlesListEveryCodeOfTheHTTPDownload() throws {
        let codes = try Self.codes(in: [
            "Sources/UpdraftHTTP/DeviceDownloads.swift", "Sources/UpdraftHTTP/FirmwareDownloadRoute.swift",
            "Sources/UpdraftApp/Gateway/GatewayDownloads.swift",
        ])
        #expect(codes.isSuperset(of: ["download_url_invalid", "download_url_expired", "job_finished", "range_not_satisfiable"]))
        for article in ["Sources/UpdraftMQTT/Documentation.docc/MQTTDeviceProtocol.md", "Sources/UpdraftCoAP/Documentation.docc/CoAPDeviceAPI.md"] {
            let text = try SourceScan.text(article)
            let missing = codes.filter { !text.contains("`\($0)`") }.sorted()
            #expect(missing.isEmpty, "HTTP download codes missing from \(article): \(missing)")
        }
    }

    @Test func theCoAPArticleListsEveryCodeACoAPDeviceCanGet() throws {
        // Sources/UpdraftWire/Dialect is the publish/subscribe wire (topics, chunk windows): not CoAP's.
        let codes = try Self.codes(in: ["Sources/UpdraftCore/Engine", "Sources/UpdraftWire/Bodies", "Sources/UpdraftCoAP"])
            // Answers to MQTT download requests; CoAP images are authorised in the adapter.
            .subtracting(["job_installing"])
            // PSKFile's: `updraft device provision` failing to write the key file, an operator's error.
            .subtracting(["psk_write_failed"])
        #expect(codes.count >= 5, "the scan found too few codes: \(codes.sorted())")
        let text = try SourceScan.text("Sources/UpdraftCoAP/Documentation.docc/CoAPDeviceAPI.md")
        let missing = codes.filter { !text.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "error codes missing from CoAPDeviceAPI.md: \(missing)")
    }
}
