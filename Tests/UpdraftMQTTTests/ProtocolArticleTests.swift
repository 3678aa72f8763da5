import Foundation
import Testing

/// Every error code a device can be sent is in its protocol article: the codes are read
/// from the sources that answer devices (`UpdraftError("code", ...)` literals), so a new
/// code without a line in the article fails here.
@Suite struct ProtocolArticleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The literal error codes in the Swift files under `folders` (or the files named).
    static func codes(in folders: [String]) throws -> Set<String> {
        let pattern = try Regex(#"UpdraftError\(\s*"([a-z_]+)""#)
        var found: Set<String> = []
        for folder in folders {
            let base = root.appendingPathComponent(folder)
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: base.path, isDirectory: &isFolder) else { throw CocoaError(.fileNoSuchFile) }
            let files =
                isFolder.boolValue
                ? FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? [] : [base]
            for file in files where file.pathExtension == "swift" {
                let text = try String(contentsOf: file, encoding: .utf8)
                for match in text.matches(of: pattern) {
                    if let code = match.output[1].substring { found.insert(String(code)) }
                }
            }
        }
        return found
    }

    static func article(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    @Test func theMQTTArticleListsEveryCodeAnMQTTDeviceCanGet() throws {
        let codes = try Self.codes(in: ["Sources/UpdraftCore/Engine", "Sources/UpdraftWire", "Sources/UpdraftMQTT"])
            // Its topic names no device, so there is nobody to answer.
            .subtracting(["unknown_topic"])
        #expect(codes.count >= 10, "the scan found too few codes: \(codes.sorted())")
        let text = try Self.article("Sources/UpdraftMQTT/Documentation.docc/MQTTDeviceProtocol.md")
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
            let text = try Self.article(article)
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
        let text = try Self.article("Sources/UpdraftCoAP/Documentation.docc/CoAPDeviceAPI.md")
        let missing = codes.filter { !text.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "error codes missing from CoAPDeviceAPI.md: \(missing)")
    }
}
