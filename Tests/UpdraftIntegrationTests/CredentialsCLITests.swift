import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport
import UpdraftWire

/// `updraft device provision` and `updraft credentials show` through the real binary:
/// passwords and CoAP pre-shared keys shown once, only hashes kept, files 0600, reserved
/// names refused; a running gateway takes a provisioned device's key without a restart.
@Suite(.serialized, .timeLimit(.minutes(3))) struct CredentialsCLITests {
    struct Account: Decodable, Equatable { let username: String; let password: String }
    struct ServiceAccounts: Decodable, Equatable { let gateway: Account; let events: Account; let consumers: [String] }
    struct Provisioned: Decodable { let username: String; let password: String; let coap_psk: String }

    static func json<T: Decodable>(_ type: T.Type, in output: String) throws -> T {
        let line = try #require(output.split(separator: "\n").first { $0.hasPrefix("[") || $0.hasPrefix("{") }, "\(output)")
        return try JSONDecoder().decode(T.self, from: Data(line.utf8))
    }

    static func mode(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func provisionShowsEachPasswordOnceAndKeepsOnlyItsHash() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = try await cli.dataDirectory()
        let run = try await cli.run(["device", "provision", "cli-1", "cli-2", "--json", "--data-dir", dir, "--log-level", "error"])
        #expect(run.status == 0, "\(run.output)")
        let accounts = try Self.json([Account].self, in: run.output)
        #expect(accounts.map(\.username) == ["cli-1", "cli-2"])
        #expect(Set(accounts.map(\.password)).count == 2 && accounts.allSatisfy { $0.password.count >= 32 })

        let file = dir + "/credentials/mosquitto.passwd"
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(try Self.mode(file) == 0o600)
        #expect(try Self.mode(dir + "/credentials") == 0o700)
        for account in accounts {
            #expect(text.contains("\(account.username):$7$101$"))
            #expect(!text.contains(account.password))
        }

        let shown = try await cli.run(["credentials", "show", "--json", "--data-dir", dir, "--log-level", "error"])
        #expect(shown.status == 0, "\(shown.output)")
        let service = try Self.json(ServiceAccounts.self, in: shown.output)
        #expect(service.gateway.username == "updraft-gateway")
        #expect(service.events.username == "updraft-gateway-events")
        #expect(service.consumers.isEmpty)
        #expect(try Self.mode(dir + "/credentials/gateway.password") == 0o600)
        // The same accounts every time: `updraft serve` and backends read them.
        let again = try await cli.run(["credentials", "show", "--json", "--data-dir", dir, "--log-level", "error"])
        #expect(try Self.json(ServiceAccounts.self, in: again.output) == service)
    }

    @Test func provisioningTheGatewaysOrAnInvalidNameIsRefused() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = try await cli.dataDirectory()
        for id in ["updraft-gateway", "updraft-gateway-events", "a/b", "x:y"] {
            let run = try await cli.run(["device", "provision", id, "--data-dir", dir, "--log-level", "error"])
            #expect(run.status == 1, "\(id) was provisioned: \(run.output)")
            #expect(run.errors.count == 1, "\(run.output)")
        }
        let file = dir + "/credentials/mosquitto.passwd"
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        #expect(!text.contains("updraft-gateway:"), "the gateway's hash was replaced by a device provisioning")
    }

    /// `device provision` against a running gateway's data directory: the `coap_psk` of
    /// its --json output opens DTLS for that device (announce, offer, image) with no
    /// restart. Hostile twins: a wrong key, another device's key for this identity, this
    /// device's key under another identity, and a key replaced by provisioning again
    /// all fail the handshake; another device's valid key cannot read this one's job.
    @Test func aProvisionedDevicesPreSharedKeyOpensDTLSAndNoOtherKeyDoes() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        try await Harness.with { h in
            let dir = h.stack.directory
            func provision(_ ids: [String]) async throws -> [String: String] {
                let run = try await cli.run(["device", "provision"] + ids + ["--json", "--data-dir", dir, "--log-level", "error"])
                try #require(run.status == 0, "\(run.output)")
                let devices = try Self.json([Provisioned].self, in: run.output)
                #expect(devices.map(\.username) == ids && devices.allSatisfy { $0.coap_psk.count >= 24 && $0.password.count >= 32 })
                return Dictionary(uniqueKeysWithValues: devices.map { ($0.username, $0.coap_psk) })
            }
            let keys = try await provision(["psk-1", "psk-2"])
            let (key1, key2) = (try #require(keys["psk-1"]), try #require(keys["psk-2"]))
            #expect(key1 != key2)
            let file = h.stack.configuration.resolvedPSKFile
            #expect(try Self.mode(file) == 0o600)
            let tool = CoAPClientTool(directory: dir)
            let port = h.stack.configuration.coap.securePort
            func coaps(_ identity: String, _ key: String, _ path: String, _ extra: [String] = []) async throws -> CoAPClientTool.Outcome {
                try await tool.run(["-u", identity, "-k", key] + extra, uri: "coaps://127.0.0.1:\(port)/\(path)")
            }
            let body = ["-m", "post", "-e", #"{"product":"thermo","version":"1.0"}"#]

            // Hostile first: none of these registers anyone.
            for (identity, key) in [("psk-1", "not-the-key-of-psk-1xxxx"), ("psk-1", key2), ("psk-2", key1), ("psk-3", key1)] {
                let refused = try await coaps(identity, key, "announce", body)
                // A 2.0x answer printed as a word (a log timestamp such as 17:47:12.012 is not one).
                let success = refused.log.split(whereSeparator: \.isWhitespace).contains { $0.count == 4 && $0.hasPrefix("2.0") }
                #expect(refused.body.isEmpty && !success, "\(identity) with a wrong key: \(refused.log)")
            }
            #expect(try await h.ops.store.devices().isEmpty)

            let hello = try await coaps("psk-1", key1, "announce", body)
            #expect(hello.text == "{}", "\(hello.log)")
            try await h.waitUntilRegistered(1)
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 2_000)
            _ = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["psk-1"]), allowDowngrade: false)
            var offer: JobOffer?
            try await eventually("the offer over DTLS") {
                offer = try? JSONDecoder().decode(JobOffer.self, from: Data(try await coaps("psk-1", key1, "job/psk-1").body))
                return offer != nil
            }
            let download = try #require(offer?.download)
            #expect(try await coaps("psk-1", key1, download, ["-b", "256"]).body == image)
            // psk-2's own valid key cannot read psk-1's job or image.
            #expect(try await coaps("psk-2", key2, "job/psk-1?d=psk-1").log.contains("4.03"))
            #expect(try await coaps("psk-2", key2, "\(download)?d=psk-1").log.contains("4.03"))

            // Provisioning again replaces the key: the new one works, the old one stops.
            let renewed = try #require(try await provision(["psk-1"])["psk-1"])
            #expect(renewed != key1)
            try await eventually("the old key refused") { try await coaps("psk-1", key1, "job/psk-1").body.isEmpty }
            #expect(try await coaps("psk-1", renewed, "job/psk-1").body.count > 100)
            let text = try String(contentsOfFile: file, encoding: .utf8)
            #expect(text.contains("psk-1 \(renewed)") && text.contains("psk-2 \(key2)") && !text.contains(key1))
        }
    }
}
