/// What the engine decided a device should be told. The engine returns these from its
/// entry points instead of calling an adapter; the composition root's router hands each
/// to the adapter of the device's transport (as swift-nio state machines return actions
/// for their caller to perform).
public struct DeviceCommand: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// Send (or keep ready to fetch) the job offer: the signed manifest and how to download.
        /// Offers are idempotent: the same offer again replaces the one a device has.
        case offer(Job, Firmware)
        /// The job ended (succeeded, failed, canceled): adapters that keep offers for devices
        /// to fetch (CoAP) drop it; pushed offers (MQTT) have nothing to take back.
        case withdraw(JobID)
    }

    public let device: DeviceID
    /// The transport the device last spoke through (MQTT when unknown).
    public let transport: Transport
    public let action: Action
    /// Increases with every command the engine makes: a router delivering commands from
    /// several tasks drops one older than what a device was already sent.
    public let sequence: UInt64

    public init(device: DeviceID, transport: Transport, action: Action, sequence: UInt64) {
        (self.device, self.transport, self.action, self.sequence) = (device, transport, action, sequence)
    }

    /// The job the command is about.
    public var jobID: JobID {
        switch action {
        case .offer(let job, _): job.id
        case .withdraw(let job): job
        }
    }
}

/// The engine's answer to a device's message: the refusal to send back (nil when taken),
/// and the commands to deliver.
public struct EngineReply: Sendable, Equatable {
    public var refusal: UpdraftError? = nil
    public var commands: [DeviceCommand] = []
}

/// What one fleet tick did: the planner actions performed and the commands to deliver.
public struct TickResult: Sendable, Equatable {
    public var actions = 0
    public var commands: [DeviceCommand] = []
}

/// What a flush wrote (the committed events, for the feed) and the commands it led to
/// (offers held back while the store could not be written, withdrawals of refused jobs).
public struct FlushResult: Sendable, Equatable {
    public var events: [UpdraftEvent] = []
    public var commands: [DeviceCommand] = []
    /// True when there was something to write and the store committed it (a flush with
    /// nothing pending writes nothing).
    public var wrote = false
}
