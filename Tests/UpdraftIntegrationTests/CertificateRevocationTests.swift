import Foundation
import Mosquitto
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// `updraft device revoke` of a certificate device (issue 10, item 4) on a real managed
/// broker: the fleet CA's CRL lists the certificate, the CLI takes the device's MQTT
/// session over (no broker restart), the certificate cannot connect again, and no other
/// client (certificate, password or the gateway) is disconnected.
@Suite(.serialized, .timeLimit(.minutes(3))) struct CertificateRevocationTests {
    static func options(_ h: Harness, _ files: Operations.CertificateFiles, _ id: String) -> MosquittoOptions {
        h.stack.configuration.mutualTLSOptions(clientID: id, certFile: files.certificate, keyFile: files.key)
    }

    static func certificates(_ h: Harness, _ ids: [DeviceID], into folder: String) async throws -> [String: Operations.CertificateFiles] {
        let admitted = try await h.ops.admitDevices(ids, certificatesInto: h.stack.directory + "/" + folder)
        return Dictionary(uniqueKeysWithValues: try admitted.map { ($0.username, try #require($0.certificate)) })
    }

    /// Polls `clients` every 5 ms for `duration`; the names of those seen disconnected.
    static func dropped(_ clients: [String: MosquittoClient], during duration: Duration) async -> Set<String> {
        var seen: Set<String> = []
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            for (name, client) in clients where !client.isConnected { seen.insert(name) }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return seen
    }

    @Test func aRevokedCertificateDeviceAloneIsDisconnectedWithin5sAndItsCertificateRefused() async throws {
        try await Harness.with { h in
            let files = try await Self.certificates(h, ["crt-1", "crt-2"], into: "certs")
            let victim = try await RawDevice.connect("crt-1", broker: Self.options(h, files["crt-1"]!, "crt-1"), password: nil, subscribe: [])
            let bystander = try await RawDevice.connect("crt-2", broker: Self.options(h, files["crt-2"]!, "crt-2"), password: nil, subscribe: [])
            let password = try await RawDevice.connect("pw-1", on: h, subscribe: [])
            defer { Task { await victim.close(); await bystander.close(); await password.close() } }
            let gateway = try #require(h.stack.gateway?.mqtt.client)
            let others = ["crt-2": bystander.client, "pw-1": password.client, "gateway": gateway]
            #expect(Self.others(others).isEmpty, "connected before the revoke")
            let watch = Task { await Self.dropped(others, during: .seconds(4)) }

            // Watched from the call on: `revoke` also writes the store after the drop.
            let start = ContinuousClock.now
            let drop = Task { () -> Duration? in
                while ContinuousClock.now - start < .seconds(5) {
                    if !victim.client.isConnected { return ContinuousClock.now - start }
                    try? await Task.sleep(for: .milliseconds(2))
                }
                return nil
            }
            let revoked = try await h.ops.revokeDevices(["crt-1"])
            let returned = ContinuousClock.now - start
            #expect(revoked.count == 1 && revoked[0].certificate && revoked[0].mqtt && !revoked[0].alreadyRevoked)
            let disconnected = await drop.value
            print("certificate revocation: crt-1 disconnected \(disconnected.map { "\($0)" } ?? "not within 5 s") after `revoke` was called (it returned after \(returned))")
            #expect(disconnected != nil, "crt-1 still connected 5 s after `revoke` was called")
            // Nobody else noticed: no restart, no takeover of anyone else.
            let droppedOthers = await watch.value
            #expect(droppedOthers.isEmpty, "disconnected meanwhile: \(droppedOthers)")
            // The revoked device's own client keeps retrying (libmosquitto reconnects): refused.
            #expect(!(await Self.reconnects(victim.client, within: .seconds(2))))
            // No one-off password is left for crt-1.
            #expect(!h.ops.brokerCredentials.provisionedUsers().contains("crt-1"))

            // Hostile twins: the revoked certificate with another client id, or claiming
            // another username (the CN is the username on this port), is refused too.
            var other = Self.options(h, files["crt-1"]!, "someone-else")
            #expect(!(await MQTTTLSTests.connects(other)))
            (other.clientID, other.username, other.password) = ("crt-2", "crt-2", "x")
            #expect(!(await MQTTTLSTests.connects(other)))
            #expect(!(await MQTTTLSTests.connects(Self.options(h, files["crt-1"]!, "crt-1"))))
            #expect(await MQTTTLSTests.connects(Self.options(h, files["crt-2"]!, "crt-2-probe")))

            // Provisioned again: a new certificate (new serial) connects, the old stays refused.
            let fresh = try await Self.certificates(h, ["crt-1"], into: "certs-again")
            #expect(try String(contentsOfFile: fresh["crt-1"]!.certificate, encoding: .utf8) != (try String(contentsOfFile: files["crt-1"]!.certificate, encoding: .utf8)))
            #expect(await MQTTTLSTests.connects(Self.options(h, fresh["crt-1"]!, "crt-1")))
            #expect(!(await MQTTTLSTests.connects(Self.options(h, files["crt-1"]!, "crt-1"))))
        }
    }

    /// Whether `client` (reconnecting on its own) is seen connected within `duration`.
    static func reconnects(_ client: MosquittoClient, within duration: Duration) async -> Bool {
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            if client.isConnected { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    static func others(_ clients: [String: MosquittoClient]) -> [String] {
        clients.filter { !$0.value.isConnected }.map(\.key)
    }

    /// mosquitto 2.0 that cannot load the CRL at a SIGHUP accepts every certificate: a CRL
    /// someone replaced is never signalled (the next provision or revoke fails instead).
    @Test func aTamperedCRLIsNeverSignalledToTheBroker() async throws {
        try await Harness.with { h in
            let files = try await Self.certificates(h, ["tam-1"], into: "certs")
            _ = try await h.ops.revokeDevices(["tam-1"])
            #expect(!(await MQTTTLSTests.connects(Self.options(h, files["tam-1"]!, "tam-1"))), "refused once revoked")
            // mosquitto handles a SIGHUP at its next loop turn: let the revoke's last one land.
            try await Task.sleep(for: .milliseconds(500))
            try "garbage\n".write(toFile: h.ops.fleetPKI.crlFile, atomically: true, encoding: .utf8)
            let error = #expect(throws: UpdraftError.self) { try h.ops.provisionDevices(["tam-2"]) }
            #expect(error?.code == "pki_crl_invalid")
            try await Task.sleep(for: .milliseconds(300))
            #expect(!(await MQTTTLSTests.connects(Self.options(h, files["tam-1"]!, "tam-1"))), "the revoked certificate stays refused")
        }
    }

    /// `updraft device revoke` (the CLI process) killed with SIGKILL at several points of
    /// its run: the device may stay connected meanwhile, and the next revoke completes it
    /// (its session taken over, no one-off password left behind).
    @Test func aRevokeKilledMidwayIsCompletedByTheNextRevoke() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        try await Harness.with { h in
            let b = h.stack.configuration.mqtt.broker
            let env = ["UPDRAFT_MQTT_BROKER_TLS_PORT": "\(b.tlsPort)", "UPDRAFT_MQTT_BROKER_MTLS_PORT": "\(b.mtlsPort)"]
            let common = ["--data-dir", h.stack.directory, "--log-level", "error"]
            for (index, delay) in [30, 120, 250, 500].enumerated() {
                let id = try DeviceID(validating: "kill-\(index)")
                let files = try await Self.certificates(h, [id], into: "certs-\(index)")
                let device = try await RawDevice.connect(id.rawValue, broker: Self.options(h, files[id.rawValue]!, id.rawValue), password: nil, subscribe: [])
                defer { Task { await device.close() } }
                let (process, _) = try cli.start(["device", "revoke", id.rawValue] + common, environment: env)
                try await Task.sleep(for: .milliseconds(delay))
                kill(process.pid, SIGKILL)
                _ = await process.waitForExit(timeout: .seconds(10))
                let start = ContinuousClock.now
                let again = try await cli.run(["device", "revoke", id.rawValue] + common, environment: env)
                #expect(again.status == 0, "\(again.output)")
                try await eventually(timeout: .seconds(5), "\(id) dropped by the second revoke") { !device.client.isConnected }
                print("certificate revocation: revoke killed after \(delay) ms; the next one dropped \(id) \(ContinuousClock.now - start) after it started")
                #expect(!(await Self.reconnects(device.client, within: .seconds(1))))
                #expect(!h.ops.brokerCredentials.provisionedUsers().contains(id.rawValue))
                #expect(try h.ops.fleetPKI.devicesWithRevokedCertificates([id]) == [id])
            }
            #expect(h.stack.gateway?.mqtt.client.isConnected == true)
        }
    }

    /// CoAP over DTLS with the fleet CA's certificates: a revoked device certificate is
    /// refused at the handshake (never reaches the gateway's 4.03), the other certificate
    /// goes on, and a certificate issued again connects.
    @Test func aRevokedCertificateIsRefusedAtTheCoAPDTLSHandshake() async throws {
        try await Harness.with(tune: { c in
            let pki = FleetPKI(configuration: c)
            (c.coap.caFile, c.coap.certificateFile, c.coap.privateKeyFile) = (pki.caFile, pki.brokerCertFile, pki.brokerKeyFile)
        }) { h in
            let files = try await Self.certificates(h, ["cc-1", "cc-2"], into: "certs")
            let tool = CoAPClientTool(directory: h.stack.directory)
            let secure = "coaps://127.0.0.1:\(h.stack.configuration.coap.securePort)/"
            let announce = ["-m", "post", "-e", #"{"product":"thermo","version":"1.0"}"#]
            let identity = { (f: Operations.CertificateFiles) in ["-c", f.certificate, "-j", f.key, "-C", f.ca] }
            let accepted = { (f: Operations.CertificateFiles, path: String) async throws -> Bool in
                try await tool.run(identity(f) + announce, uri: secure + path).text == "{}"
            }
            #expect(try await accepted(files["cc-1"]!, "announce"))
            let start = ContinuousClock.now
            _ = try await h.ops.revokeDevices(["cc-1"])
            let refused = try await tool.run(identity(files["cc-1"]!) + announce, uri: secure + "announce")
            print("certificate revocation: cc-1's DTLS handshake refused \(ContinuousClock.now - start) after `revoke` was called")
            // OpenSSL's alert from the gateway's refusal; no CoAP answer at all (not even 4.03).
            #expect(refused.body.isEmpty && refused.log.contains("bad certificate") && !refused.log.contains("4.03"), "\(refused.log)")
            // Hostile twin: the revoked certificate speaking for another device.
            let other = try await tool.run(identity(files["cc-1"]!) + announce, uri: secure + "announce?d=cc-2")
            #expect(other.body.isEmpty && other.log.contains("bad certificate"), "\(other.log)")
            #expect(try await accepted(files["cc-2"]!, "announce"))
            let fresh = try await Self.certificates(h, ["cc-1"], into: "certs-again")
            // The gateway follows the re-admission from the store (every tail interval).
            try await eventually(timeout: .seconds(5), "the new certificate accepted") { try await accepted(fresh["cc-1"]!, "announce") }
            #expect(!(try await accepted(files["cc-1"]!, "announce")))
        }
    }
}

/// The CRL itself: what OpenSSL reads, and what the gateway refuses to start with.
@Suite struct FleetCRLTests {
    static func openssl(_ arguments: [String]) throws -> (ok: Bool, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let pipe = Pipe()
        (process.standardOutput, process.standardError) = (pipe, pipe)
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus == 0, output)
    }

    static func folder() -> String {
        let dir = NSTemporaryDirectory() + "updraft-crl-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func theCRLIsAV2ListSignedByTheFleetCAWithTheRevokedSerialsOnly() throws {
        let dir = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pki = FleetPKI(settings: PKISettings(), directory: dir)
        try pki.prepareBroker()
        // openssl prints a serial as upper-case hex without the sign byte.
        let serial = { (id: DeviceID) throws -> String in
            let file = dir + "/\(id).crt"
            try pki.issueDevice(id).certificate.write(toFile: file, atomically: true, encoding: .utf8)
            let hex = try Self.openssl(["x509", "-in", file, "-noout", "-serial"]).output
            return String(hex.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst("serial=".count))
        }
        let (kept, gone) = (try serial("keep-1"), try serial("gone-1"))
        let before = try String(contentsOfFile: pki.crlFile, encoding: .utf8)
        #expect(try pki.revokeCertificates(of: ["gone-1", "nobody"]) == ["gone-1"])
        // As if a revoke was killed after the record but before the CRL: the next writes it.
        try before.write(toFile: pki.crlFile, atomically: true, encoding: .utf8)
        #expect(try pki.revokeCertificates(of: ["gone-1"]).isEmpty)
        let check = try Self.openssl(["crl", "-in", pki.crlFile, "-CAfile", pki.caFile, "-noout", "-text"])
        #expect(check.ok && check.output.contains("verify OK") && check.output.contains("Version 2"), "\(check.output)")
        #expect(!gone.isEmpty && check.output.contains(gone) && !check.output.contains(kept), "\(check.output)")
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/issued-certificates")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // Signed again at each broker start, with the same entries.
        try pki.prepareBroker()
        #expect(try Self.openssl(["crl", "-in", pki.crlFile, "-CAfile", pki.caFile, "-noout", "-text"]).output.contains(gone))
    }

    @Test func aCRLNotSignedByTheFleetCAStopsTheBrokerFromStarting() throws {
        let dir = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pki = FleetPKI(settings: PKISettings(), directory: dir)
        _ = try pki.issueDevice("gone-1")
        _ = try pki.revokeCertificates(of: ["gone-1"])
        // A well-formed empty list from another CA (it would let gone-1 back in), then garbage.
        let other = FleetPKI(settings: PKISettings(), directory: dir + "/other")
        try other.prepareBroker()
        for forged in [try String(contentsOfFile: other.crlFile, encoding: .utf8), "garbage\n"] {
            try forged.write(toFile: pki.crlFile, atomically: true, encoding: .utf8)
            let error = #expect(throws: UpdraftError.self) { try pki.prepareBroker() }
            #expect(error?.code == "pki_crl_invalid")
            #expect(try String(contentsOfFile: pki.crlFile, encoding: .utf8) == forged, "the forged list is kept as evidence, not replaced")
        }
    }
}
