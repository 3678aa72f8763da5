import Logging
import Synchronization
import UpdraftCore

/// A protocol adapter as the ``DeviceCommandRouter`` sees it: the transport it serves and
/// how it hands an engine command to a device. MQTT publishes offers; CoAP keeps them for
/// devices to GET or observe.
///
/// A new adapter (the HTTP download adapter of issue 11, say) plugs into the same seam:
/// a `Transport` case for it, a type conforming here whose ``deliver(_:)`` keeps or sends
/// the offer, made with a ``DevicePipeline`` (which registers it with the router) and
/// handling its requests through that pipeline: identify, decode, engine call, refuse,
/// count, image bytes. Nothing in the engine or the other adapters changes.
public protocol DeviceAdapter: AnyObject, Sendable {
    var transport: Transport { get }
    /// Hands one command to the device. Runs in the caller's task under the router's lock:
    /// must not block or wait (queue what goes out; offers are idempotent).
    func deliver(_ command: DeviceCommand)
}

/// Delivers the engine's commands to the adapter of each device's transport, in the order
/// the engine made them. Commands come back from the engine in several tasks (device
/// messages, the fleet tick, operator changes): a command older than one already delivered
/// to its device is dropped, so a late offer never lands after the job's withdrawal.
public final class DeviceCommandRouter: Sendable {
    private struct Registered {
        weak var adapter: (any DeviceAdapter)?
    }

    private struct State {
        var adapters: [Transport: Registered] = [:]
        var delivered: [DeviceID: UInt64] = [:]
        var undeliverable = 0
    }

    /// The adapter used for a device whose transport has none here (CoAP disabled, say):
    /// the one every device can be reached through.
    public let fallback: Transport
    private let state = Mutex(State())
    private let logger: Logger

    public init(fallback: Transport = .mqtt, logger: Logger) {
        self.fallback = fallback
        self.logger = logger
    }

    /// Adds the adapter of its transport; the router keeps it weakly (its owner is the
    /// composition root). ``DevicePipeline`` calls it when an adapter is made.
    public func register(_ adapter: any DeviceAdapter) {
        state.withLock { $0.adapters[adapter.transport] = Registered(adapter: adapter) }
    }

    /// Commands no adapter could take (no adapter for the transport nor the fallback).
    public var undeliverable: Int { state.withLock { $0.undeliverable } }

    public func deliver(_ commands: [DeviceCommand]) {
        guard !commands.isEmpty else { return }
        state.withLock { state in
            for command in commands { deliver(command, &state) }
        }
    }

    private func deliver(_ command: DeviceCommand, _ state: inout State) {
        if let last = state.delivered[command.device], last >= command.sequence { return }
        state.delivered[command.device] = command.sequence
        guard let adapter = state.adapters[command.transport]?.adapter ?? state.adapters[fallback]?.adapter else {
            state.undeliverable += 1
            logger.warning(
                "no adapter for a device command",
                metadata: ["device.id": "\(command.device)", "job.id": "\(command.jobID)", "transport": "\(command.transport.rawValue)"])
            return
        }
        adapter.deliver(command)
    }
}
