import Foundation
import Testing
import UpdraftTestSupport

/// The two-machine signing path with the real binary: the signing machine makes the key
/// and signs; the gateway holds only public keys and takes the signed manifest.
@Suite(.timeLimit(.minutes(3))) struct OfflineSigningCLITests {
    @Test func aGatewayWithoutThePrivateKeyTakesManifestsSignedElsewhere() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let (signer, other, gateway) = (cli.logs + "/signer", cli.logs + "/other", cli.logs + "/gateway")
        let image = cli.logs + "/fw.bin"
        FileManager.default.createFile(atPath: image, contents: Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 13) }))
        for dir in [signer, other] {
            let made = try await cli.run(["keys", "generate", "--output", dir + "/keys/release.key"])
            try #require(made.status == 0, "\(made.output)")
        }
        // A signing machine's folder holds the key pair and nothing else (no store).
        #expect(try FileManager.default.subpathsOfDirectory(atPath: signer).sorted() == ["keys", "keys/release.key", "keys/release.pub"])
        let signed = try await cli.run([
            "firmware", "sign", image, "--product", "thermo", "--version", "2.0", "--key", signer + "/keys/release.key",
        ])
        try #require(signed.status == 0, "\(signed.output)")
        let keyID = try #require(signed.output.split(separator: "\n").first { $0.hasPrefix("key id:") }?.split(separator: " ").last)
        let add = ["firmware", "add", image, "--manifest", image + ".manifest", "--signature", image + ".sig", "--data-dir", gateway, "--log-level", "error"]

        // The gateway trusts only another key: refused, naming the key that signed.
        try FileManager.default.createDirectory(atPath: gateway + "/keys/trusted", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: other + "/keys/release.pub", toPath: gateway + "/keys/trusted/other.pub")
        let untrusted = try await cli.run(add)
        #expect(untrusted.status == 1)
        #expect(untrusted.errors.count == 1 && untrusted.errors[0].contains("\(keyID)") && untrusted.errors[0].contains("not trusted"), "\(untrusted.output)")

        // Trusted (rotation: two keys), it goes in; no private key anywhere in the gateway's folder.
        try FileManager.default.copyItem(atPath: signer + "/keys/release.pub", toPath: gateway + "/keys/trusted/signer.pub")
        let added = try await cli.run(add)
        #expect(added.status == 0, "\(added.output)")
        #expect(added.output.contains("firmware: thermo@2.0"))
        let files = try FileManager.default.subpathsOfDirectory(atPath: gateway)
        #expect(!files.contains { $0.hasSuffix(".key") }, "\(files)")

        // The same manifest with another image, or a tampered manifest: refused.
        let swapped = cli.logs + "/evil.bin"
        FileManager.default.createFile(atPath: swapped, contents: Data(repeating: 0x42, count: 5000))
        var wrongImage = add
        wrongImage[2] = swapped
        let mismatch = try await cli.run(wrongImage)
        #expect(mismatch.status == 1)
        #expect(mismatch.errors.first?.contains("Pass the image that was signed") == true, "\(mismatch.output)")
        var manifest = try Data(contentsOf: URL(fileURLWithPath: image + ".manifest"))
        manifest[manifest.count / 2] ^= 0x01
        try manifest.write(to: URL(fileURLWithPath: image + ".manifest"))
        let tampered = try await cli.run(add)
        #expect(tampered.status == 1)
        #expect(tampered.errors.first?.contains("does not verify") == true, "\(tampered.output)")

        // An earlier sequence than the catalog's latest would be a rollback on every device.
        let old = try await cli.run([
            "firmware", "sign", image, "--product", "thermo", "--version", "1.9", "--key", signer + "/keys/release.key", "--sequence", "5",
            "--output", cli.logs + "/old",
        ])
        try #require(old.status == 0, "\(old.output)")
        var older = add
        (older[4], older[6]) = (cli.logs + "/old.manifest", cli.logs + "/old.sig")
        let rollback = try await cli.run(older)
        #expect(rollback.status == 1)
        #expect(rollback.errors.first?.contains("--sequence") == true, "\(rollback.output)")
    }
}
