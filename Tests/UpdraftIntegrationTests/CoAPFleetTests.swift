import CoAP
import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport
import UpdraftWire

/// CoAP reference devices next to MQTT ones, through one gateway and one engine.
@Suite(.timeLimit(.minutes(3))) struct CoAPFleetTests {
    @Test func aMixedFleetSucceedsThroughTheSameEngine() async throws {
        try await Harness.with { h in
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 100_000)
            let fleet = try await h.fleet(8) { config in
                config.protocol = .mixed
                config.coapPort = h.stack.configuration.coap.port
                config.blockSize = 256
            }
            try await h.start(fleet, online: 8)
            let (_, jobs) = try await h.updateEveryDevice(of: fleet, count: 8, to: firmware, image: image)
            let byTransport = fleet.snapshotByTransport()
            #expect(byTransport[.mqtt]?.count(running: "2.0") == 4)
            #expect(byTransport[.coap]?.count(running: "2.0") == 4)
            await fleet.stop()

            // The store has both transports, and every job took the same path.
            let devices = try await h.ops.store.devices()
            #expect(devices.filter { $0.transport == .coap }.count == 4)
            #expect(devices.filter { $0.transport == .mqtt }.count == 4)
            for device in fleet.devices {
                #expect(devices.first { $0.id == device.id }?.transport == device.transport)
            }
            let events = try await h.ops.store.events(after: 0, limit: 100_000)
            h.expectEveryJobTookTheWholePath(jobs, events: events)
        }
    }

    @Test func coapDevicesOfflineAtReleaseGetTheirJobWhenTheyComeOnline() async throws {
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 30_000)
            let fleet = try await h.fleet(6, prefix: "tiny-") { config in
                config.protocol = .coap
                config.coapPort = h.stack.configuration.coap.port
                config.offlineFraction = 0.5
            }
            // They announce when they come online, and the announce answer holds the job.
            try await h.releaseWithDevicesOffline(firmware, to: fleet, offline: 3)
            try await fleet.waitForAll(version: "2.0", timeout: .seconds(30))
            await fleet.stop()
        }
    }

    @Test func aCoAPDeviceThatRebootsMidDownloadResumesAtTheFirstMissingBlock() async throws {
        try await Harness.with { h in
            // 16-byte blocks: thousands of round trips, so the reboot lands mid-transfer.
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 128 * 1024)
            let storage = URL(fileURLWithPath: h.stack.directory).appendingPathComponent("coap-devices")
            let fleet = try await h.fleet(1, prefix: "sleepy-") { config in
                config.protocol = .coap
                config.coapPort = h.stack.configuration.coap.port
                config.blockSize = 16
                config.rebootFraction = 1
                config.rebootAfter = .milliseconds(50)
                config.storageDirectory = storage
            }
            try await h.start(fleet, online: 1)
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .product("thermo"), allowDowngrade: false)
            try await h.waitForAllSucceeded(plan.release.id, timeout: .seconds(120))
            let snapshot = try await fleet.waitForAll(version: "2.0", timeout: .seconds(30))
            #expect(snapshot.resumes == 1)
            let device = fleet.devices[0]
            #expect(device.state.connections >= 3, "boot, reboot mid-download, reboot after install: \(device.state)")
            // Every block once: the blocks in before the reboot were kept, not fetched again.
            #expect(device.state.bytesReceived == image.count, "\(device.state)")
            let installed = try Data(contentsOf: storage.appendingPathComponent("sleepy-0000/firmware.bin"))
            #expect([UInt8](installed) == image)
            await fleet.stop()
        }
    }

    /// aiocoap (Python, PyPI) as an independent CoAP implementation: its observation of
    /// `job/<id>` is pushed the job released while it waits.
    @Test func anAiocoapObserverIsPushedAJobReleasedWhileItWaits() async throws {
        let python = Peers.python
        guard FileManager.default.isExecutableFile(atPath: python) else {
            Issue.record("No aiocoap venv at \(python): run `make test` (its pyvenv target creates it).")
            return
        }
        try await Harness.with { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 4_000)
            let port = h.stack.configuration.coap.port
            // The device announces first: that creates its job resource.
            let client = CoAPClient(logger: Harness.logger)
            defer { client.shutdown() }
            let session = try await client.session(host: "127.0.0.1", port: port)
            let hello = try await session.post(
                "announce", payload: Array(#"{"product":"thermo","version":"1.0"}"#.utf8), contentFormat: .json, query: ["d=aio-1"])
            #expect(hello.code == .changed)
            #expect(hello.payload == Array("{}".utf8))
            try await h.waitUntilRegistered(1)

            let output = h.stack.directory + "/aiocoap.log"
            let observer = try ChildProcess(
                executable: python, arguments: [Peers.observeJob, "coap://127.0.0.1:\(port)/job/aio-1?d=aio-1", "60"],
                outputFile: output)
            defer { observer.stop() }
            func log() -> String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }
            try await eventually("aiocoap's first representation") { log().contains("representation 2.05 {}") || !observer.isRunning }
            #expect(observer.isRunning, "aiocoap ended early: \(log())")

            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["aio-1"]), allowDowngrade: false)
            let job = try #require(plan.jobs.first)
            #expect(await observer.waitForExit(timeout: .seconds(30)), "no offer pushed: \(log())")
            #expect(WEXITSTATUS(observer.terminationStatus) == 0, "\(log())")
            let line = try #require(log().split(separator: "\n").first { $0.hasPrefix("offer ") }, "\(log())")
            let offer = try JSONDecoder().decode(JobOffer.self, from: Data(line.dropFirst("offer ".count).utf8))
            #expect(offer.job == job.id)
            #expect(offer.sha256 == firmware.sha256)
            #expect(offer.download != nil)
        }
    }
}

/// Peers that are not Swift: the venv `make test` prepares and the scripts next to this file.
enum Peers {
    private static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let packageRoot = testsDirectory.deletingLastPathComponent().deletingLastPathComponent()
    /// Made by the Makefile's `pyvenv` target (python3 -m venv + pip install aiocoap).
    static let python = packageRoot.appendingPathComponent(".build/pyvenv/bin/python").path
    static let observeJob = testsDirectory.appendingPathComponent("Peers/observe_job.py").path
}

private func WEXITSTATUS(_ status: Int32) -> Int32 { (status >> 8) & 0xFF }
