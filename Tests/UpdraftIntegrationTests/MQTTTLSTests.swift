import Foundation
import LoopbackPorts
import Mosquitto
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftMQTT
import UpdraftTestSupport

/// The managed broker's TLS and mutual-TLS listeners and the fleet PKI, with real
/// mosquitto and real TLS, tried as a client on the network would (README "Attacks").
@Suite(.timeLimit(.minutes(3))) struct MQTTTLSTests {
    /// Whether a client with `options` gets connected (and disconnects again).
    static func connects(_ options: MosquittoOptions) async -> Bool {
        let loop = MosquittoEventLoop(name: "tls-\(options.clientID)")
        defer { loop.shutdown() }
        let client = MosquittoClient(options: options, loop: loop, logger: Harness.logger)
        do {
            try await client.connect(timeout: .seconds(3))
            await client.disconnect()
            return true
        } catch {
            await client.disconnect()
            return false
        }
    }

    /// Writes a device certificate as `<dir>/<name>.crt` and `.key`; returns their paths.
    static func write(_ certificate: FleetPKI.DeviceCertificate, into dir: String, name: String) throws -> (cert: String, key: String) {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let paths = (cert: dir + "/\(name).crt", key: dir + "/\(name).key")
        try certificate.certificate.write(toFile: paths.cert, atomically: true, encoding: .utf8)
        try certificate.privateKey.write(toFile: paths.key, atomically: true, encoding: .utf8)
        return paths
    }

    /// The mutual-TLS connection of a device holding a fleet certificate for `id`.
    static func certificateDevice(_ h: Harness, _ id: DeviceID, clientID: String? = nil) throws -> MosquittoOptions {
        let files = try #require(try h.ops.issueDeviceCertificates([id], into: h.stack.directory + "/device-certs")[id])
        return h.stack.configuration.mutualTLSOptions(clientID: clientID ?? id.rawValue, certFile: files.certificate, keyFile: files.key)
    }

    /// A certificate for `id` from a CA that is not the fleet's.
    static func foreignCertificate(_ h: Harness, _ id: DeviceID) throws -> MosquittoOptions {
        let other = FleetPKI(settings: PKISettings(), directory: h.stack.directory + "/other-ca")
        let files = try write(try other.issueDevice(id), into: h.stack.directory + "/other-certs", name: id.rawValue)
        return h.stack.configuration.mutualTLSOptions(clientID: id.rawValue, certFile: files.cert, keyFile: files.key)
    }

    static func listeners(_ h: Harness) throws -> [String] {
        try String(contentsOfFile: h.stack.directory + "/broker/mosquitto.conf", encoding: .utf8)
            .split(separator: "\n").filter { $0.hasPrefix("listener ") }.map(String.init)
    }

    @Test func aDeviceConnectsOverTLSWithItsPasswordAndPlainMQTTIsNotServed() async throws {
        try await Harness.with(gateway: false) { h in
            let password = try #require(try await h.stack.devicePassword("dev-1"))
            let broker = h.stack.configuration.mqtt.broker
            var tls = h.stack.brokerOptions(clientID: "dev-1")
            (tls.username, tls.password) = ("dev-1", password)
            #expect(tls.port == broker.tlsPort && tls.tls?.caFile == h.stack.caFile)
            #expect(await Self.connects(tls))
            // plain_port 0: no plain listener at all, and plain MQTT with the same password
            // to the TLS ports gets no further than the TLS handshake.
            #expect(try Self.listeners(h) == ["listener \(broker.tlsPort) 127.0.0.1", "listener \(broker.mtlsPort) 127.0.0.1"])
            for port in [broker.tlsPort, broker.mtlsPort] {
                var plain = tls
                (plain.tls, plain.port) = (nil, port)
                #expect(!(await Self.connects(plain)), "plain MQTT was served on port \(port)")
            }
        }
    }

    @Test func aPlainPortIsOnLoopbackOnlyAndAsksForThePasswordToo() async throws {
        let plainPort = PortProbe.freePort()
        try await Harness.with(gateway: false, tune: { $0.mqtt.broker.plainPort = plainPort }) { h in
            #expect(try Self.listeners(h).contains("listener \(plainPort) 127.0.0.1"))
            let password = try #require(try await h.stack.devicePassword("dev-1"))
            var plain = h.stack.brokerOptions(clientID: "dev-1")
            #expect(plain.port == plainPort && plain.tls == nil)
            (plain.username, plain.password) = ("dev-1", password)
            #expect(await Self.connects(plain))
            plain.password = password + "x"
            #expect(!(await Self.connects(plain)))
        }
    }

    @Test func aCertificateDeviceUpdatesEndToEnd() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 20_000)
            // No password: the certificate alone lets it in, as cert-0.
            var config = DeviceConfig(id: "cert-0", product: "thermo", version: "1.0", trustedKeys: try h.ops.trustedKeys())
            (config.requestTimeout, config.rebootDelay) = (.milliseconds(800), .milliseconds(100))
            config.useBroker(try Self.certificateDevice(h, "cert-0"))
            #expect(config.password == nil && config.tls?.certFile != nil && config.brokerPort == h.stack.configuration.mqtt.broker.mtlsPort)
            let loop = MosquittoEventLoop(name: "cert-0", logger: Harness.logger)
            let device = UpdraftDeviceAgent(config: config, loop: loop, logger: Harness.logger)
            let running = Task { try await device.run() }
            try await h.waitUntilRegistered(1)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["cert-0"]), allowDowngrade: false)
            _ = try await h.waitForJobs(plan.release.id) { $0.allSatisfy { $0.state == .succeeded } }
            try await eventually("the device to run 2.0") { device.state.version == "2.0" }
            await device.stop()
            _ = await running.result
            loop.shutdown()
        }
    }

    @Test func aCertificateFromAnotherCAIsRefused() async throws {
        try await Harness.with(gateway: false) { h in
            let genuine = try Self.certificateDevice(h, "dev-1")
            #expect(await Self.connects(genuine))
            // Same device id, same shape, signed by a CA the broker does not trust.
            let foreign = try Self.foreignCertificate(h, "dev-1")
            #expect(!(await Self.connects(foreign)))
        }
    }

    @Test func noCertificateOnTheMutualTLSPortIsRefusedEvenWithAPassword() async throws {
        try await Harness.with(gateway: false) { h in
            let password = try #require(try await h.stack.devicePassword("dev-1"))
            var options = h.stack.configuration.mutualTLSOptions(clientID: "dev-1", certFile: "", keyFile: "")
            // A client that skips the broker's name check and brings a valid password, no certificate.
            options.tls = .init(caFile: h.stack.caFile, insecure: true)
            (options.username, options.password) = ("dev-1", password)
            #expect(!(await Self.connects(options)))
        }
    }

    @Test func aCertificateDeviceCannotClaimAnotherDevicesNameTopicsOrSession() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let victim = try await RawDevice.connect("victim-1", on: h)
            defer { Task { await victim.close() } }
            let victimPassword = try #require(try await h.stack.devicePassword("victim-1"))
            // spy-1's certificate, presenting the victim's username, password and client id.
            let spy = try await RawDevice.connect(
                "victim-1", broker: try Self.certificateDevice(h, "spy-1", clientID: "victim-1"), password: victimPassword, subscribe: [])
            defer { Task { await spy.close() } }
            for filter in ["updraft/d/victim-1/#", "updraft/events", "#"] {
                try? await spy.client.subscribe(filter, qos: .atLeastOnce)
            }
            try? await spy.client.publish(
                topic: "updraft/d/victim-1/job", payload: Array(#"{"job":"forged"}"#.utf8), qos: .atLeastOnce, retain: true)
            try await victim.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            try await h.waitUntilRegistered(1)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["victim-1"]), allowDowngrade: false)
            let offer = try #require(try await victim.next("/job"), "the real offer reaches the victim")
            #expect(!String(decoding: offer.payload, as: UTF8.self).contains("forged"))
            #expect(String(decoding: offer.payload, as: UTF8.self).contains(plan.jobs[0].id.rawValue))
            #expect(try await spy.next("", timeout: .seconds(1)) == nil, "the certificate device read another's topics")
            #expect(victim.client.isConnected, "the certificate device took over the victim's session")
            #expect(try await h.ops.store.devices().map(\.id) == ["victim-1"])
        }
    }

    @Test func theBrokerCertificateVerifiesAgainstTheFleetCAUnderTheNameLocalhost() async throws {
        try await Harness.with(gateway: false) { h in
            let password = try #require(try await h.stack.devicePassword("dev-1"))
            var options = h.stack.brokerOptions(clientID: "dev-1")
            (options.host, options.username, options.password) = ("localhost", "dev-1", password)
            #expect(options.tls?.insecure == false)
            #expect(await Self.connects(options))
            // A client that trusts only another CA does not take this broker for its own.
            let other = FleetPKI(settings: PKISettings(), directory: h.stack.directory + "/other-ca")
            try other.prepareBroker()
            options.tls = .init(caFile: other.caFile)
            #expect(!(await Self.connects(options)))
        }
    }
}

/// The generated PKI on its own: made once, keys 0600, the broker certificate follows its
/// names, device certificates are client certificates of the fleet CA (checked by openssl).
@Suite struct FleetPKITests {
    static func openssl(_ arguments: [String]) -> Bool {
        (try? SpawnedProcess.run("/usr/bin/openssl", arguments)) != nil
    }

    static func mode(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func theCAIsMadeOnceTheBrokerCertificateFollowsItsNamesAndKeysAre0600() throws {
        let dir = try makeTemporaryDirectory(prefix: "updraft-pki").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var settings = PKISettings()
        try FleetPKI(settings: settings, directory: dir).prepareBroker()
        let (ca, broker) = (try String(contentsOfFile: dir + "/ca.crt", encoding: .utf8), try String(contentsOfFile: dir + "/broker.crt", encoding: .utf8))
        #expect(try Self.mode(dir + "/ca.key") == 0o600 && Self.mode(dir + "/broker.key") == 0o600)
        #expect(Self.openssl(["verify", "-CAfile", dir + "/ca.crt", "-purpose", "sslserver", "-verify_hostname", "localhost", dir + "/broker.crt"]))
        #expect(Self.openssl(["verify", "-CAfile", dir + "/ca.crt", "-verify_ip", "127.0.0.1", dir + "/broker.crt"]))
        #expect(!Self.openssl(["verify", "-CAfile", dir + "/ca.crt", "-verify_hostname", "updraft.example.com", dir + "/broker.crt"]))

        try FleetPKI(settings: settings, directory: dir).prepareBroker()
        #expect(try String(contentsOfFile: dir + "/broker.crt", encoding: .utf8) == broker, "an unchanged broker certificate was made again")
        settings.brokerNames = ["updraft.example.com", "192.0.2.10"]
        try FleetPKI(settings: settings, directory: dir).prepareBroker()
        #expect(try String(contentsOfFile: dir + "/ca.crt", encoding: .utf8) == ca, "the fleet CA changed")
        #expect(Self.openssl(["verify", "-CAfile", dir + "/ca.crt", "-verify_hostname", "updraft.example.com", dir + "/broker.crt"]))
        #expect(Self.openssl(["verify", "-CAfile", dir + "/ca.crt", "-verify_ip", "192.0.2.10", dir + "/broker.crt"]))
    }

    @Test func aDeviceCertificateIsAClientCertificateOfTheFleetCAWithItsIDAsCN() throws {
        let dir = try makeTemporaryDirectory(prefix: "updraft-pki").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pki = FleetPKI(settings: PKISettings(), directory: dir)
        let files = try MQTTTLSTests.write(try pki.issueDevice("cert-7"), into: dir, name: "cert-7")
        #expect(Self.openssl(["verify", "-CAfile", pki.caFile, "-purpose", "sslclient", files.cert]))
        #expect(!Self.openssl(["verify", "-CAfile", pki.caFile, "-purpose", "sslserver", files.cert]))
        #expect(Self.openssl(["x509", "-in", files.cert, "-noout", "-checkend", "0"]))
        let subject = try SpawnedProcess("/usr/bin/openssl", ["x509", "-in", files.cert, "-noout", "-subject"], outputFile: URL(fileURLWithPath: dir + "/subject"))
        _ = subject.waitUntilExit()
        #expect(subject.output.contains("CN = cert-7") || subject.output.contains("CN=cert-7"), "\(subject.output)")
        // Another CA's device certificate does not verify against this one.
        let other = FleetPKI(settings: PKISettings(), directory: dir + "/other")
        let foreign = try MQTTTLSTests.write(try other.issueDevice("cert-7"), into: dir + "/other", name: "cert-7")
        #expect(!Self.openssl(["verify", "-CAfile", pki.caFile, foreign.cert]))
    }

    @Test func anOwnPKIWithoutTheCAKeyGivesNoDeviceCertificates() throws {
        var settings = PKISettings()
        (settings.caFile, settings.brokerCertFile, settings.brokerKeyFile) = ("/x/ca.crt", "/x/b.crt", "/x/b.key")
        #expect(throws: UpdraftError.self) { try FleetPKI(settings: settings, directory: "/nonexistent").issueDevice("dev-1") }
        #expect(throws: UpdraftError.self) { try FleetPKI(settings: settings, directory: "/nonexistent").prepareBroker() }
        settings.brokerKeyFile = ""
        #expect(throws: UpdraftError.self) { try settings.validate() }
    }
}

/// `updraft device provision --cert` through the real binary.
@Suite(.timeLimit(.minutes(2))) struct CertificateCLITests {
    struct Provisioned: Decodable {
        struct Files: Decodable { let certificate: String; let key: String; let ca: String }
        let username: String
        let password: String
        let certificate: Files?
    }

    @Test func provisionCertWritesTheDevicesCertificateKeyAndTheCA() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = try await cli.dataDirectory()
        let out = dir + "/out"
        let run = try await cli.run(["device", "provision", "cert-1", "cert-2", "--cert", "--out", out, "--json", "--data-dir", dir, "--log-level", "error"])
        #expect(run.status == 0, "\(run.output)")
        let line = try #require(run.output.split(separator: "\n").first { $0.hasPrefix("[") }, "\(run.output)")
        let devices = try JSONDecoder().decode([Provisioned].self, from: Data(line.utf8))
        #expect(devices.map(\.username) == ["cert-1", "cert-2"])
        for device in devices {
            let files = try #require(device.certificate)
            #expect(files.certificate == out + "/\(device.username).crt" && files.key == out + "/\(device.username).key" && files.ca == out + "/ca.crt")
            #expect(try FleetPKITests.mode(files.key) == 0o600)
            #expect(FleetPKITests.openssl(["verify", "-CAfile", files.ca, "-purpose", "sslclient", files.certificate]))
            #expect(device.password.count >= 32, "a certificate device still gets its password")
        }
        // The CA is the data directory's fleet CA, which the broker will serve.
        #expect(try String(contentsOfFile: out + "/ca.crt", encoding: .utf8) == String(contentsOfFile: dir + "/pki/ca.crt", encoding: .utf8))
        #expect(try FleetPKITests.mode(dir + "/pki/ca.key") == 0o600)

        let text = try await cli.run(["device", "provision", "cert-3", "--cert", "--out", out, "--data-dir", dir, "--log-level", "error"])
        #expect(text.output.contains("cert-3: wrote \(out)/cert-3.crt, \(out)/cert-3.key (0600) and \(out)/ca.crt"), "\(text.output)")
        let reserved = try await cli.run(["device", "provision", "updraft-gateway", "--cert", "--out", out, "--data-dir", dir, "--log-level", "error"])
        #expect(reserved.status == 1)
        #expect(!FileManager.default.fileExists(atPath: out + "/updraft-gateway.crt"))
    }
}

/// The listener keys: the gateway needs a password listener, ports differ, and the
/// gateway's connection follows them.
@Suite struct BrokerListenerSettingsTests {
    @Test func theManagedBrokerNeedsAPasswordListenerOnDistinctPorts() throws {
        var settings = MQTTSettings()
        (settings.broker.tlsPort, settings.broker.plainPort) = (0, 0)
        #expect(throws: UpdraftError.self) { try settings.validate() }
        (settings.broker.tlsPort, settings.broker.mtlsPort) = (8883, 8883)
        #expect(throws: UpdraftError.self) { try settings.validate() }
        settings.broker.mtlsPort = 0
        try settings.validate()
        settings.broker.external = true
        (settings.broker.tlsPort, settings.broker.plainPort) = (0, 0)
        try settings.validate()
    }

    @Test func theGatewayConnectsOverTLSUnlessAPlainLoopbackPortIsSet() throws {
        var configuration = UpdraftConfiguration()
        configuration.dataDirectory = "/srv/updraft"
        configuration.mqtt.broker.tlsHost = "0.0.0.0"
        configuration.mqtt.password = "given"  // not the generated one: nothing is written
        var gateway = try configuration.gatewayClientOptions()
        #expect(gateway.host == "127.0.0.1" && gateway.port == 8883 && gateway.tls?.caFile == "/srv/updraft/pki/ca.crt")
        #expect(gateway.tls?.insecure == false && gateway.cleanSession == false)
        configuration.mqtt.broker.plainPort = 1884
        gateway = try configuration.gatewayClientOptions()
        #expect(gateway.host == "127.0.0.1" && gateway.port == 1884 && gateway.tls == nil)
        configuration.mqtt.broker.external = true
        (configuration.mqtt.broker.host, configuration.mqtt.broker.port) = ("broker.example.com", 8883)
        gateway = try configuration.gatewayClientOptions()
        #expect(gateway.host == "broker.example.com" && gateway.port == 8883 && gateway.tls == nil)
    }
}

extension BrokerListenerSettingsTests {
    @Test func theListenerAndPKIKeysReadTheirScopesWithBounds() throws {
        let keys = SettingsReaderTests.reader([
            "BROKER_TLS_HOST": "0.0.0.0", "BROKER_TLS_PORT": "18883", "BROKER_MTLS_PORT": "0", "BROKER_PLAIN_PORT": "1884",
        ])
        let broker = MQTTSettings(reader: keys).broker
        try keys.check()
        #expect(broker.tlsHost == "0.0.0.0" && broker.tlsPort == 18883 && broker.mtlsPort == 0 && broker.plainPort == 1884)
        let pkiKeys = SettingsReaderTests.reader(["BROKER_NAMES": "updraft.example.com,192.0.2.10", "DEVICE_DAYS": "30", "CA_FILE": "/pki/ca.crt"])
        let pki = PKISettings(reader: pkiKeys)
        try pkiKeys.check()
        #expect(pki.brokerNames == ["updraft.example.com", "192.0.2.10"] && pki.deviceDays == 30 && pki.caFile == "/pki/ca.crt")
        for (key, value) in [("BROKER_TLS_PORT", "70000"), ("BROKER_PLAIN_PORT", "-1")] {
            let bad = SettingsReaderTests.reader([key: value])
            _ = MQTTSettings(reader: bad)
            #expect(throws: UpdraftError.self) { try bad.check() }
        }
        let badDays = SettingsReaderTests.reader(["DEVICE_DAYS": "0"])
        _ = PKISettings(reader: badDays)
        #expect(throws: UpdraftError.self) { try badDays.check() }
    }
}
