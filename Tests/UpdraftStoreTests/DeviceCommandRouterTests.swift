import Foundation
import Logging
import Synchronization
import Testing
import UpdraftAdapter
import UpdraftCore

/// An adapter that records what the router handed it.
final class RecordingAdapter: DeviceAdapter {
    let transport: Transport
    private let received = Mutex<[DeviceCommand]>([])
    init(_ transport: Transport) { self.transport = transport }
    func deliver(_ command: DeviceCommand) { received.withLock { $0.append(command) } }
    var commands: [DeviceCommand] { received.withLock { $0 } }
}

@Suite("DeviceCommandRouter")
struct DeviceCommandRouterTests {
    /// The router warns about commands it cannot deliver; these tests make some on purpose.
    static let logger: Logger = {
        var logger = Logger(label: "updraft.router.tests")
        logger.logLevel = .critical
        return logger
    }()
    static let firmware = Firmware(
        product: "p", version: "2", sequence: 2, size: 4, sha256: String(repeating: "ab", count: 32), md5: "",
        createdAt: Date(timeIntervalSince1970: 0), manifest: SignedManifest(payload: [], signature: []))

    static func job(_ id: JobID, device: DeviceID) -> Job {
        Job(
            id: id, releaseID: "r1", deviceID: device, firmwareID: firmware.id, targetVersion: "2",
            createdAt: Date(timeIntervalSince1970: 0))
    }

    static func offer(_ job: JobID, to device: DeviceID, via transport: Transport, sequence: UInt64) -> DeviceCommand {
        DeviceCommand(
            device: device, transport: transport, action: .offer(Self.job(job, device: device), firmware), sequence: sequence)
    }

    @Test func deliversEachCommandToTheAdapterOfItsTransportInOrder() {
        let router = DeviceCommandRouter(logger: Self.logger)
        let mqtt = RecordingAdapter(.mqtt)
        let coap = RecordingAdapter(.coap)
        router.register(mqtt)
        router.register(coap)
        let commands = [
            Self.offer("j1", to: "d1", via: .mqtt, sequence: 1),
            Self.offer("j2", to: "d2", via: .coap, sequence: 2),
            DeviceCommand(device: "d2", transport: .coap, action: .withdraw("j2"), sequence: 3),
        ]
        router.deliver(commands)
        #expect(mqtt.commands == [commands[0]])
        #expect(coap.commands == [commands[1], commands[2]])
        #expect(router.undeliverable == 0)
    }

    @Test func aTransportWithoutAdapterGoesToTheFallback() {
        let router = DeviceCommandRouter(fallback: .mqtt, logger: Self.logger)
        let mqtt = RecordingAdapter(.mqtt)
        router.register(mqtt)
        let command = Self.offer("j1", to: "d1", via: .coap, sequence: 1)
        router.deliver([command])
        #expect(mqtt.commands == [command], "CoAP disabled: the device is offered over MQTT, as before the router")
    }

    @Test func withNoAdapterAtAllACommandIsCountedNotLost() {
        let router = DeviceCommandRouter(fallback: .mqtt, logger: Self.logger)
        let coap = RecordingAdapter(.coap)
        router.register(coap)
        router.deliver([Self.offer("j1", to: "d1", via: .mqtt, sequence: 1)])
        #expect(coap.commands.isEmpty)
        #expect(router.undeliverable == 1)
    }

    @Test func aCommandOlderThanOneAlreadyDeliveredToItsDeviceIsDropped() {
        let router = DeviceCommandRouter(logger: Self.logger)
        let coap = RecordingAdapter(.coap)
        router.register(coap)
        let withdraw = DeviceCommand(device: "d1", transport: .coap, action: .withdraw("j1"), sequence: 5)
        // Two tasks: the withdrawal was delivered first, the offer made before it comes late.
        router.deliver([withdraw])
        router.deliver([Self.offer("j1", to: "d1", via: .coap, sequence: 4)])
        // Another device's older command is not affected.
        let other = Self.offer("j2", to: "d2", via: .coap, sequence: 3)
        router.deliver([other])
        #expect(coap.commands == [withdraw, other])
    }

    @Test func anAdapterThatIsGoneIsNotKeptAlive() {
        let router = DeviceCommandRouter(logger: Self.logger)
        do {
            let mqtt = RecordingAdapter(.mqtt)
            router.register(mqtt)
        }
        router.deliver([Self.offer("j1", to: "d1", via: .mqtt, sequence: 1)])
        #expect(router.undeliverable == 1)
    }
}
