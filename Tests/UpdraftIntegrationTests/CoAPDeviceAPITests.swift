import Foundation
import Testing
import UpdraftApp
import UpdraftCoAP
import UpdraftCore
import UpdraftTestSupport
import UpdraftWire

/// libcoap's own `coap-client-openssl` as the device: it exits 0 even on errors, so
/// every check reads what it printed or wrote.
struct CoAPClientTool {
    static let path = "/usr/bin/coap-client-openssl"
    let directory: String

    struct Outcome {
        /// stdout + stderr: libcoap prints error codes such as "4.04 Not Found" there.
        var log: String
        /// The response body (-o file).
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    func run(_ arguments: [String], uri: String) async throws -> Outcome {
        let tag = UUID().uuidString.prefix(8)
        let logFile = directory + "/coap-\(tag).log"
        let bodyFile = directory + "/coap-\(tag).out"
        let child = try ChildProcess(
            executable: Self.path, arguments: ["-B", "10", "-o", bodyFile] + arguments + [uri], outputFile: logFile)
        guard await child.waitForExit(timeout: .seconds(30)) else {
            child.stop()
            throw UpdraftError("test_timeout", "coap-client \(arguments) \(uri) did not finish")
        }
        let log = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
        let body = FileManager.default.contents(atPath: bodyFile).map { [UInt8]($0) } ?? []
        return Outcome(log: log, body: body)
    }
}

@Suite(.timeLimit(.minutes(3))) struct CoAPDeviceAPITests {
    func uri(_ h: Harness, _ path: String, secure: Bool = false) -> String {
        let c = h.stack.configuration.coap
        return secure ? "coaps://127.0.0.1:\(c.securePort)/\(path)" : "coap://127.0.0.1:\(c.port)/\(path)"
    }

    func announce(_ tool: CoAPClientTool, _ h: Harness, _ device: String, version: String) async throws -> CoAPClientTool.Outcome {
        try await tool.run(
            ["-m", "post", "-t", "json", "-e", #"{"product":"thermo","version":"\#(version)","accepts_updates":true}"#],
            uri: uri(h, "announce?d=\(device)"))
    }

    /// A CoAP device has no will: one that stays silent past the lifetime it announced is
    /// taken for offline; one that announces again within it stays online.
    @Test func aSilentCoAPDeviceGoesOfflineAfterItsLifetimeAndAChattyOneStaysOnline() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let refused = try await tool.run(
                ["-m", "post", "-t", "json", "-e", #"{"product":"thermo","version":"1.0","lifetime":0}"#],
                uri: uri(h, "announce?d=quiet-0"))
            #expect(refused.log.contains("4.00") && refused.log.contains("lifetime"), "\(refused.log)")

            let fleet = try await h.fleet(1, prefix: "chatty-") { config in
                config.protocol = .coap
                config.coapPort = h.stack.configuration.coap.port
                // Announces every 1.5 s: slack for a loaded machine, still well inside the test.
                config.coapLifetime = .seconds(3)
            }
            fleet.start()
            // The chatty device first: quiet-1 is online for about a second only, so waiting
            // for both online at once raced a slow first announce (seen in CI under load).
            try await h.waitUntilRegistered(1)
            _ = try await tool.run(
                ["-m", "post", "-t", "json", "-e", #"{"product":"thermo","version":"1.0","lifetime":1}"#],
                uri: uri(h, "announce?d=quiet-1"))
            try await eventually(timeout: .seconds(10), "quiet-1 offline") {
                try await h.ops.store.device("quiet-1")?.online == false
            }
            let events = try await h.ops.store.events(after: 0, limit: 1000)
            let offline = try #require(events.first { $0.kind == .deviceOffline && $0.deviceID == "quiet-1" })
            // Last seen stays when it last spoke, not when the gateway noticed the silence.
            let quiet = try #require(try await h.ops.store.device("quiet-1"))
            #expect(try #require(quiet.lastSeen) <= offline.time.addingTimeInterval(-0.9), "\(quiet)")
            // The reference device announces every half lifetime: never taken for offline.
            try await Task.sleep(for: .seconds(5))
            #expect(try await h.ops.store.device("chatty-0000")?.online == true)
            let later = try await h.ops.store.events(after: 0, limit: 1000)
            #expect(!later.contains { $0.kind == .deviceOffline && $0.deviceID == "chatty-0000" })
            await fleet.stop()
        }
    }

    @Test func coapClientGetsTheJobAndDownloadsTheImageAtEveryBlockSize() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 20_000)
            let first = try await announce(tool, h, "tiny-1", version: "1.0")
            #expect(first.text == "{}", "no job yet: \(first.log)")
            try await h.waitUntilRegistered(1)

            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["tiny-1"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first)
            // The gateway picks the release up from the event log and fills the job resource.
            var offer: JobOffer?
            try await eventually("the job resource to hold the offer") {
                let got = try await tool.run([], uri: uri(h, "job/tiny-1?d=tiny-1"))
                offer = try? JSONDecoder().decode(JobOffer.self, from: Data(got.body))
                return offer != nil
            }
            let received = try #require(offer)
            #expect(received.job == job.id)
            #expect(received.sha256 == firmware.sha256)
            #expect(received.signedManifest != nil)
            let download = try #require(received.download)

            for block in [16, 64, 512, 1024] {
                let got = try await tool.run(["-b", "\(block)"], uri: uri(h, "\(download)?d=tiny-1"))
                #expect(got.body == image, "block size \(block): \(got.body.count) bytes, log: \(got.log.prefix(300))")
            }

            // Progress through the same state machine; success once the new version is announced.
            for state in [#""state":"downloaded""#, #""state":"verified""#, #""state":"installing""#, #""state":"installed""#] {
                let got = try await tool.run(
                    ["-m", "post", "-t", "json", "-e", #"{"job":"\#(job.id)",\#(state)}"#], uri: uri(h, "progress?d=tiny-1"))
                #expect(!got.log.contains("4."), "\(state): \(got.log)")
            }
            _ = try await announce(tool, h, "tiny-1", version: "2.0")
            try await h.waitForAllSucceeded(plan.release.id, timeout: .seconds(30))
            let after = try await tool.run([], uri: uri(h, "job/tiny-1?d=tiny-1"))
            #expect(after.text == "{}")
            let device = try #require(try await h.ops.store.device("tiny-1"))
            #expect(device.transport == .coap)
        }
    }

    @Test func badRequestsGetCoAPErrorsAndTheEndpointKeepsServing() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 5_000)
            _ = try await announce(tool, h, "tiny-a", version: "1.0")
            _ = try await announce(tool, h, "tiny-b", version: "1.0")
            try await h.waitUntilRegistered(2)
            _ = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["tiny-a"]), allowDowngrade: false)

            #expect(try await tool.run([], uri: uri(h, "nothing-here?d=tiny-a")).log.contains("4.04"))
            #expect(try await tool.run(["-m", "delete"], uri: uri(h, "announce?d=tiny-a")).log.contains("4.05"))
            let malformed = try await tool.run(["-m", "post", "-e", "{not json"], uri: uri(h, "announce?d=tiny-a"))
            #expect(malformed.log.contains("4.00"))
            #expect(malformed.log.contains("malformed_announce"))
            let badProgress = try await tool.run(
                ["-m", "post", "-e", #"{"job":"j0000000000000000","state":"downloading","percent":400}"#], uri: uri(h, "progress?d=tiny-a"))
            #expect(badProgress.log.contains("4.00"))
            // Another device's job, a spoofed identity, no identity at all.
            #expect(try await tool.run([], uri: uri(h, "job/tiny-a?d=tiny-b")).log.contains("4.03"))
            #expect(try await tool.run([], uri: uri(h, "job/tiny-a")).log.contains("4.01"))
            var offer: JobOffer?
            try await eventually("the offer") {
                offer = try? JSONDecoder().decode(JobOffer.self, from: Data(try await tool.run([], uri: uri(h, "job/tiny-a?d=tiny-a")).body))
                return offer != nil
            }
            let download = try #require(offer?.download)
            #expect(try await tool.run([], uri: uri(h, "\(download)?d=tiny-b")).log.contains("4.03"))
            // An out-of-order report is refused by the state machine: 4.09 with the reason.
            let refused = try await tool.run(
                ["-m", "post", "-e", #"{"job":"\#(offer!.job)","state":"installed"}"#], uri: uri(h, "progress?d=tiny-a"))
            #expect(refused.log.contains("4.09"))
            #expect(refused.log.contains("transition_refused"))
            // Still serving.
            #expect(try await tool.run([], uri: uri(h, "job/tiny-a?d=tiny-a")).body.count > 100)
        }
    }

    @Test func dtlsWithTheDevicesPreSharedKey() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let key = try PSKFile.issue(for: "secure-1", path: h.stack.configuration.resolvedPSKFile)
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 3_000)
            let body = #"{"product":"thermo","version":"1.0"}"#
            let hello = try await tool.run(
                ["-u", "secure-1", "-k", key, "-m", "post", "-e", body], uri: uri(h, "announce", secure: true))
            #expect(hello.text == "{}", "\(hello.log)")
            try await h.waitUntilRegistered(1)
            _ = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["secure-1"]), allowDowngrade: false)
            var offer: JobOffer?
            try await eventually("the offer over DTLS") {
                let got = try await tool.run(["-u", "secure-1", "-k", key], uri: uri(h, "job/secure-1", secure: true))
                offer = try? JSONDecoder().decode(JobOffer.self, from: Data(got.body))
                return offer != nil
            }
            let download = try #require(offer?.download)
            let got = try await tool.run(["-u", "secure-1", "-k", key, "-b", "64"], uri: uri(h, download, secure: true))
            #expect(got.body == image)
            // Claiming another device over DTLS is refused; a wrong key fails the handshake.
            #expect(try await tool.run(["-u", "secure-1", "-k", key], uri: uri(h, "job/secure-1?d=other", secure: true)).log.contains("4.03"))
            let wrong = try await tool.run(["-u", "secure-1", "-k", "not-the-key"], uri: uri(h, "job/secure-1", secure: true))
            #expect(wrong.body.isEmpty)
        }
    }

    /// DTLS with certificates from the project's own Certs/make-dev-certs.sh: the device's
    /// certificate CN is its id.
    @Test func dtlsWithADeviceCertificate() async throws {
        let certs = FileManager.default.temporaryDirectory.appendingPathComponent("updraft-certs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: certs) }
        let script = try ChildProcess(
            executable: "/bin/bash", arguments: ["Certs/make-dev-certs.sh", certs.path, "localhost", "cert-1"],
            outputFile: FileManager.default.temporaryDirectory.appendingPathComponent("certs-\(UUID().uuidString).log").path)
        #expect(await script.waitForExit(timeout: .seconds(60)))
        let file = { (name: String) in certs.appendingPathComponent(name).path }
        try await Harness.with(tune: { c in
            c.coap.caFile = file("ca.crt")
            c.coap.certificateFile = file("server.crt")
            c.coap.privateKeyFile = file("server.key")
        }) { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let identity = ["-c", file("device-cert-1.crt"), "-j", file("device-cert-1.key"), "-C", file("ca.crt")]
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 5_000)
            let hello = try await tool.run(
                identity + ["-m", "post", "-e", #"{"product":"thermo","version":"1.0"}"#], uri: uri(h, "announce", secure: true))
            #expect(hello.text == "{}", "\(hello.log)")
            try await h.waitUntilRegistered(1)
            #expect(try await h.ops.store.device("cert-1")?.online == true)
            _ = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["cert-1"]), allowDowngrade: false)
            var offer: JobOffer?
            try await eventually("the offer over DTLS with a certificate") {
                let got = try await tool.run(identity, uri: uri(h, "job/cert-1", secure: true))
                offer = try? JSONDecoder().decode(JobOffer.self, from: Data(got.body))
                return offer != nil
            }
            let download = try #require(offer?.download)
            let got = try await tool.run(identity + ["-b", "1024"], uri: uri(h, download, secure: true))
            #expect(got.body == image)
            // The certificate names the device: claiming another one is refused.
            #expect(try await tool.run(identity, uri: uri(h, "job/cert-1?d=other", secure: true)).log.contains("4.03"))
        }
    }

    /// CoAP has no retained messages, but `boot` works the same: a re-announce from the
    /// boot that reported `installed` (a retransmission, a lifetime refresh) is not a
    /// restart and cannot fail the install; the next boot's announce judges it.
    @Test func aReannounceOfTheSameBootDoesNotFailTheInstall() async throws {
        try await Harness.with { h in
            let tool = CoAPClientTool(directory: h.stack.directory)
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 4_000)
            func announce(_ version: String, boot: String) async throws -> CoAPClientTool.Outcome {
                try await tool.run(
                    ["-m", "post", "-t", "json", "-e", #"{"product":"thermo","version":"\#(version)","boot":\#(boot)}"#],
                    uri: uri(h, "announce?d=boot-1"))
            }
            _ = try await announce("1.0", boot: "7")
            try await h.waitUntilRegistered(1)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["boot-1"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first)
            try await eventually("the gateway to adopt the job") {
                try await tool.run([], uri: uri(h, "job/boot-1?d=boot-1")).body.count > 100
            }
            for state in ["downloaded", "verified", "installing", "installed", "installing"] {
                let got = try await tool.run(
                    ["-m", "post", "-t", "json", "-e", #"{"job":"\#(job.id)","state":"\#(state)"}"#], uri: uri(h, "progress?d=boot-1"))
                #expect(!got.log.contains("4."), "\(state) (a repeat of a step taken is silent): \(got.log)")
            }
            #expect(try await announce("1.0", boot: "-1").log.contains("4.00"))
            #expect(!(try await announce("1.0", boot: "7")).log.contains("4."))
            // Had the same boot's announce failed the job, it could not succeed now.
            _ = try await announce("2.0", boot: "8")
            let jobs = try await h.waitForJobs(plan.release.id, timeout: .seconds(30)) { $0.allSatisfy(\.state.isTerminal) }
            #expect(jobs.map(\.state) == [.succeeded], "the same boot is not a restart: \(jobs.map { $0.detail ?? "" })")
            #expect(try await h.ops.store.device("boot-1")?.boot == 8)
            let events = try await h.ops.store.events(after: 0, limit: 10_000)
            #expect(!events.contains { $0.kind == .jobRefused })
        }
    }
}
