import Foundation
import Mosquitto
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftWire
import UpdraftTestSupport
import UpdraftTools

/// Whoever can write a device's job topic must not be able to fail its jobs: the device
/// ignores (and counts) offers it cannot verify, and the genuine offer still installs.
@Suite(.timeLimit(.minutes(3))) struct ForgedOfferTests {
    /// Offers for `job` that a forger can make: a manifest signed by its own key, the same
    /// claiming the real key's id, and the genuine manifest with the offer's size altered.
    func forgeries(of genuine: JobOffer, _ firmware: Firmware, realKeyID: String) throws -> [JobOffer] {
        let stranger = ReleaseSigningKey()
        var manifest = Manifest(
            product: firmware.product, version: firmware.version, sequence: firmware.sequence, size: firmware.size,
            sha256: firmware.sha256, created: Date(), keyID: stranger.publicKey.keyID)
        var forged: [JobOffer] = []
        for keyID in [stranger.publicKey.keyID, realKeyID] {
            manifest.keyID = keyID
            let signed = try stranger.sign(manifest)
            var offer = genuine
            (offer.manifest, offer.signature) = (signed.payloadBase64, signed.signatureBase64)
            forged.append(offer)
        }
        var altered = genuine
        altered.size += 1
        forged.append(altered)
        return forged
    }

    @Test func forgedOffersOnTheJobTopicAreIgnoredAndTheRealJobStillSucceeds() async throws {
        try await Harness.with { h in
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 20_000)
            var config = DeviceConfig(
                id: "victim-0", product: "thermo", version: "1.0", trustedKeys: try h.ops.trustedKeys())
            config.useBroker(h.stack.brokerOptions(clientID: "-"))
            config.dialect = h.stack.dialect
            config.password = try await h.stack.devicePassword("victim-0")
            config.requestTimeout = .milliseconds(800)
            config.rebootDelay = .milliseconds(100)
            let loop = MosquittoEventLoop(name: "victim", logger: Harness.logger)
            let device = UpdraftDeviceAgent(config: config, loop: loop, logger: Harness.logger)
            let running = Task { try await device.run() }
            defer { loop.shutdown() }
            try await h.waitUntilRegistered(1)

            // With the gateway stopped the job waits in the store, and anything the device
            // reports waits in the gateway's persistent session: on main, `rejected`.
            await h.stack.stopGateway()
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["victim-0"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first)
            let genuine = JobOffer(job: job, firmware: firmware)
            let forged = try forgeries(of: genuine, firmware, realKeyID: try h.ops.publicKey().keyID)

            // Another client that can write the job topic: with broker authentication on, only
            // one holding the gateway's password (a leaked one), while the gateway is away.
            var options = h.stack.brokerOptions(clientID: "forger")
            options.username = h.stack.configuration.mqtt.username
            options.password = try h.ops.serviceAccounts().gateway.password
            let forgerLoop = MosquittoEventLoop(name: "forger", logger: Harness.logger)
            defer { forgerLoop.shutdown() }
            let forger = MosquittoClient(options: options, loop: forgerLoop, logger: Harness.logger)
            try await forger.connect()
            let topic = h.stack.dialect.topic(.job, of: "victim-0")
            for (index, offer) in forged.enumerated() {
                // The second one retained, as a forger would leave it for the next connect.
                try await forger.publish(topic: topic, payload: h.stack.dialect.encode(offer), qos: .atLeastOnce, retain: index == 1)
            }
            try await eventually(timeout: .seconds(10), "the device to count the forged offers") { device.state.ignoredOffers >= forged.count }
            #expect(device.state.status == .idle)
            #expect(device.state.job == nil)
            await forger.disconnect()

            try await h.stack.startGateway()
            let jobs = try await h.waitForAllSucceeded(plan.release.id)
            #expect(jobs.allSatisfy { $0.failure == nil })
            let events = try await h.ops.store.events(after: 0, limit: 10_000).filter { $0.jobID == job.id }
            #expect(!events.contains { $0.to == .failed }, "\(events.map(\.kind))")
            try await eventually("the device to run 2.0") { device.state.version == "2.0" }
            #expect(await device.installedImage == image)
            #expect(device.state.ignoredOffers >= forged.count)
            await device.stop()
            _ = await running.result
        }
    }

    /// Rotation: firmware signed on another machine with a new key. A device that trusts
    /// old and new installs it; one that still trusts only the old key ignores the offer
    /// (counted) and its job is not failed: it waits for an update that teaches it the key.
    @Test func aNewKeyInstallsOnDevicesThatTrustItAndIsIgnoredByTheOthers() async throws {
        try await Harness.with { h in
            let newKey = h.stack.directory + "/signer/new.key"
            _ = try ReleaseKeyFiles(signingKeyPath: newKey, trustedDirectory: "").generate(force: false)
            let trusted = h.stack.configuration.resolvedTrustedKeysDirectory
            try FileManager.default.createDirectory(atPath: trusted, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: ReleaseKeyFiles.publicKeyPath(for: newKey), toPath: trusted + "/new.pub")
            let both = try h.ops.trustedKeys()
            #expect(both.keys.count == 2)

            let file = h.stack.directory + "/fw-2.0.bin"
            let image = try DeterministicImage.write(30_000, seed: 9, to: file, what: "test")
            let made = try OfflineSigner.sign(image: file, product: "thermo", version: "2.0", sequence: nil, keyPath: newKey)
            let firmware = try await h.ops.addSignedFirmware(file: file, manifest: made.signed.payload, signature: made.signed.signature).firmware
            #expect(firmware.sequence == made.manifest.sequence)

            let rotated = try await h.fleet(1, prefix: "rotated-") { $0.trustedKeys = both }
            let oldOnly = TrustedReleaseKeys(try h.ops.publicKey())
            let stale = try await h.fleet(1, prefix: "stale-") { $0.trustedKeys = oldOnly }
            try await h.start(rotated, online: 1)
            try await h.start(stale, online: 1)
            try await h.waitUntilRegistered(2)
            let (rotatedID, staleID) = (rotated.devices[0].id, stale.devices[0].id)
            let plan = try await h.ops.createRelease(
                firmwareID: firmware.id, target: .devices([rotatedID, staleID]), allowDowngrade: false, allowUnknown: false)
            _ = try await h.waitForJobs(plan.release.id) { jobs in jobs.contains { $0.deviceID == rotatedID && $0.state == .succeeded } }
            try await rotated.waitForAll(version: "2.0", timeout: .seconds(30))
            #expect(await rotated.devices[0].installedImage == image)
            _ = try await stale.waitUntil(timeout: .seconds(10)) { $0.ignoredOffers >= 1 }
            let staleJob = try #require(try await h.ops.store.jobs(release: plan.release.id).first { $0.deviceID == staleID })
            #expect(staleJob.state != .failed && staleJob.failure == nil, "\(staleJob)")
            #expect(stale.snapshot().count(running: "1.0") == 1)
            await rotated.stop()
            await stale.stop()
        }
    }
}
