import CoAP
import Foundation
import Mosquitto
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport
import UpdraftWire

/// Devices with DTLS sessions of their own: provisioned (`coap_psk`), each session open
/// and announced on 1.0, registered.
struct CoAPDevices {
    let client: CoAPClient
    let sessions: [DeviceID: CoAPClientSession]
    let keys: [DeviceID: String]
    let port: Int

    init(_ ids: [DeviceID], on h: Harness) async throws {
        let provisioned = try await h.ops.admitDevices(ids)
        keys = Dictionary(uniqueKeysWithValues: provisioned.map { (DeviceID(unchecked: $0.username), $0.coapPSK) })
        port = h.stack.configuration.coap.securePort
        client = CoAPClient(logger: Harness.logger)
        var sessions: [DeviceID: CoAPClientSession] = [:]
        for id in ids {
            let session = try await client.session(host: "127.0.0.1", port: port, security: .psk(identity: id.rawValue, key: Array(keys[id]!.utf8)))
            #expect(try await session.post("announce", payload: Array(AttackTests.announce10.utf8), contentFormat: .json).code == .changed)
            sessions[id] = session
        }
        self.sessions = sessions
        try await h.waitUntilRegistered(ids.count)
    }

    /// The device's offer, once the gateway has made it; returns its image path.
    func offer(of id: DeviceID) async throws -> String {
        var offer: JobOffer?
        try await eventually("\(id)'s offer") {
            offer = try? JSONDecoder().decode(JobOffer.self, from: Data(try await sessions[id]!.get("job/\(id)").payload))
            return offer != nil
        }
        return try #require(offer?.download)
    }
}

/// `updraft device revoke` (issue 10, item 4) on a real managed broker, gateway and DTLS
/// endpoint: the device is cut off within 5 s on both protocols, its job ends canceled
/// (`revoked`) with a `device.revoked` event, the others go on, and provisioning it again
/// re-admits it.
@Suite(.serialized, .timeLimit(.minutes(3))) struct RevocationTests {
    static func revokedJob(_ h: Harness, _ release: ReleaseID, _ device: DeviceID) async throws -> Job {
        try await eventually(timeout: .seconds(5), "\(device)'s job canceled") {
            try await h.ops.store.jobs(release: release).contains { $0.deviceID == device && $0.state == .canceled }
        }
        let events = try await h.ops.store.events(after: 0, limit: 10_000)
        let job = try #require(try await h.ops.store.jobs(release: release).first { $0.deviceID == device })
        #expect(events.contains { $0.jobID == job.id && $0.to == .canceled && $0.detail == "revoked" }, "\(events.filter { $0.jobID == job.id })")
        #expect(events.contains { $0.kind == .deviceRevoked && $0.deviceID == device && $0.detail == "revoked by \(h.ops.actor)" && $0.actor == h.ops.actor.name })
        return job
    }

    @Test func aRevokedMQTTDeviceIsDisconnectedItsJobCanceledAndProvisioningReadmitsIt() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 10_000)
            let victim = try await RawDevice.connect("rev-1", on: h)
            let bystander = try await RawDevice.connect("stay-1", on: h)
            defer { Task { await bystander.close() } }
            let oldPassword = try #require(try await h.stack.devicePassword("rev-1"))
            for device in [victim, bystander] { try await device.send("announce", #"{"product":"thermo","version":"1.0"}"#) }
            try await h.waitUntilRegistered(2)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["rev-1", "stay-1"]), allowDowngrade: false)
            #expect(try await victim.next("/job") != nil)
            #expect(try await bystander.next("/job") != nil)
            try await victim.send("progress", #"{"job":"\#(plan.jobs.first { $0.deviceID == "rev-1" }!.id)","state":"downloading","percent":10}"#)

            let start = ContinuousClock.now
            let revoked = try await h.ops.revokeDevices(["rev-1"])
            #expect(revoked.map(\.device) == ["rev-1"] && revoked[0].mqtt && !revoked[0].coap && !revoked[0].alreadyRevoked)
            try await eventually(timeout: .seconds(5), "the broker to disconnect rev-1") { !victim.client.isConnected }
            let disconnected = ContinuousClock.now - start
            print("revocation: rev-1 disconnected \(disconnected) after `revoke` was called")
            #expect(disconnected < .seconds(5))
            _ = try await Self.revokedJob(h, plan.release.id, "rev-1")
            await victim.close()

            // Its old password opens nothing; the bystander kept its connection and its job.
            #expect(!(await MQTTAuthenticationTests.connects(h, clientID: "rev-1", username: "rev-1", password: oldPassword)))
            #expect(bystander.client.isConnected)
            let other = try #require(try await h.ops.store.jobs(release: plan.release.id).first { $0.deviceID == "stay-1" })
            #expect(other.state == .notified, "\(other)")
            let device = try await h.ops.store.device("rev-1")
            #expect(device != nil && device?.online == false)
            #expect(try await h.ops.store.fleetProfiles()["rev-1"]?.isRevoked == true)
            await #expect(throws: UpdraftError.self) {
                try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["rev-1"]), allowDowngrade: false)
            }

            // Provisioning again re-admits it: new password, a new job reaches it.
            let fresh = try #require(try await h.ops.admitDevices(["rev-1"]).first)
            #expect(try await h.ops.store.fleetProfiles()["rev-1"]?.isRevoked == false)
            try await eventually(timeout: .seconds(10), "the broker to take the new password") {
                await MQTTAuthenticationTests.connects(h, clientID: "rev-1", username: "rev-1", password: fresh.password)
            }
            try await eventually(timeout: .seconds(5), "the gateway to re-admit rev-1") {
                await h.stack.gateway?.engine.isRevoked("rev-1") == false
            }
            let back = try await RawDevice.connect("rev-1", broker: h.stack.brokerOptions(clientID: "rev-1"), password: fresh.password)
            defer { Task { await back.close() } }
            try await back.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            let again = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["rev-1"]), allowDowngrade: false)
            let offer = try #require(try await back.next("/job"), "the re-admitted device gets its new job")
            #expect(String(decoding: offer.payload, as: UTF8.self).contains(again.jobs[0].id.rawValue))
        }
    }

    /// CoAP: the key leaves the PSK file (handshakes with it fail, tried with
    /// coap-client-openssl), and a DTLS session opened before keeps no power: libcoap asks
    /// for the key only at the handshake, so the gateway refuses the revoked device itself.
    @Test func aRevokedCoAPDevicesKeyAndOpenDTLSSessionAreRefused() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 4_000)
            let devices = try await CoAPDevices(["crev-1", "cstay-1"], on: h)
            defer { devices.client.shutdown() }
            let (victim, bystander, keys, port) = (devices.sessions["crev-1"]!, devices.sessions["cstay-1"]!, devices.keys, devices.port)
            let announce = Array(AttackTests.announce10.utf8)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["crev-1", "cstay-1"]), allowDowngrade: false)
            let download = try await devices.offer(of: "crev-1")

            let start = ContinuousClock.now
            #expect(try await h.ops.revokeDevices(["crev-1"]).first?.coap == true)
            let job = try await Self.revokedJob(h, plan.release.id, "crev-1")
            // The open session: every request refused, nothing recorded.
            let progress = Array(#"{"job":"\#(job.id)","state":"downloading","percent":50}"#.utf8)
            try await eventually(timeout: .seconds(5), "the open session refused") {
                try await victim.post("announce", payload: announce, contentFormat: .json).code == .forbidden
            }
            print("revocation: crev-1's open DTLS session refused \(ContinuousClock.now - start) after `revoke` was called")
            let refused = try await victim.post("progress", payload: progress, contentFormat: .json)
            #expect(refused.code == .forbidden && String(decoding: refused.payload, as: UTF8.self).contains("device_revoked"))
            #expect(try await victim.get(download).code == .forbidden)
            #expect(try await victim.get("job/crev-1").payload == Array("{}".utf8))
            #expect(try await h.ops.store.jobs(release: plan.release.id).first { $0.deviceID == "crev-1" }?.state == .canceled)

            // A new handshake with the old key fails (coap-client-openssl).
            let tool = CoAPClientTool(directory: h.stack.directory)
            try await eventually(timeout: .seconds(5), "the old key refused at the handshake") {
                let outcome = try await tool.run(["-u", "crev-1", "-k", keys["crev-1"]!], uri: "coaps://127.0.0.1:\(port)/job/crev-1")
                return outcome.body.isEmpty && !outcome.log.contains("2.0")
            }
            print("revocation: crev-1's old key refused at the handshake \(ContinuousClock.now - start) after `revoke` was called")
            // The bystander goes on.
            #expect(try await bystander.get("job/cstay-1").payload.count > 100)
            let fresh = try #require(try await h.ops.admitDevices(["crev-1"]).first)
            try await eventually(timeout: .seconds(5), "the new key accepted") {
                let body = ["-m", "post", "-e", #"{"product":"thermo","version":"1.0"}"#]
                return try await tool.run(["-u", "crev-1", "-k", fresh.coapPSK] + body, uri: "coaps://127.0.0.1:\(port)/announce").text == "{}"
            }
        }
    }

    /// Revoked while no gateway runs: the broker refuses it at once (the CLI reloads only a
    /// running broker; the file is read at every start), and the gateway cancels its job
    /// when it starts.
    @Test func aRevocationMadeWhileTheGatewayIsStoppedTakesEffectAtItsStart() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 4_000)
            let victim = try await RawDevice.connect("off-1", on: h)
            try await victim.send("announce", #"{"product":"thermo","version":"1.0"}"#)
            try await h.waitUntilRegistered(1)
            await h.stack.stopGateway()
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["off-1"]), allowDowngrade: false)
            _ = try await h.ops.revokeDevices(["off-1"])
            try await eventually(timeout: .seconds(5), "the broker to disconnect off-1") { !victim.client.isConnected }
            await victim.close()
            #expect(try await h.ops.store.jobs(release: plan.release.id).first?.state == .queued)
            try await h.stack.startGateway()
            _ = try await Self.revokedJob(h, plan.release.id, "off-1")
        }
    }

    /// The binary: unknown ids change nothing; --json; `device show` and `device list`
    /// say revoked; provisioning again clears it.
    @Test func theRevokeCommandRefusesUnknownIdsAndShowsRevokedDevices() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let dir = try await cli.dataDirectory()
        let common = ["--data-dir", dir, "--log-level", "error"]
        #expect(try await cli.run(["device", "provision", "r-1", "r-2"] + common).status == 0)
        let passwd = dir + "/credentials/mosquitto.passwd"
        let psk = dir + "/coap-psk.txt"
        let before = (try String(contentsOfFile: passwd, encoding: .utf8), try String(contentsOfFile: psk, encoding: .utf8))

        let unknown = try await cli.run(["device", "revoke", "r-1", "ghost-9"] + common)
        #expect(unknown.status == 1 && unknown.output.contains("ghost-9"), "\(unknown.output)")
        #expect(try String(contentsOfFile: passwd, encoding: .utf8) == before.0)
        #expect(try String(contentsOfFile: psk, encoding: .utf8) == before.1)
        #expect(try await cli.run(["device", "revoke", "updraft-gateway"] + common).status == 1)

        let run = try await cli.run(["device", "revoke", "r-1", "--json"] + common)
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains(#"{"already_revoked":false,"certificate":false,"coap":true,"device":"r-1","mqtt":true}"#), "\(run.output)")
        let (passwords, keys) = (try String(contentsOfFile: passwd, encoding: .utf8), try String(contentsOfFile: psk, encoding: .utf8))
        #expect(!passwords.contains("r-1:") && passwords.contains("r-2:"))
        #expect(!keys.contains("r-1 ") && keys.contains("r-2 "))
        #expect(try await cli.run(["device", "show", "r-1"] + common).output.contains("revoked:"))
        #expect(try await cli.run(["device", "list"] + common).output.contains("revoked"))
        let events = try await cli.run(["events"] + common).output
        #expect(events.contains("device.revoked") && events.contains("revoked by"), "\(events)")

        #expect(try await cli.run(["device", "provision", "r-1"] + common).status == 0)
        #expect(try String(contentsOfFile: passwd, encoding: .utf8).contains("r-1:"))
        #expect(!(try await cli.run(["device", "show", "r-1"] + common).output.contains("revoked:")))
    }
}
