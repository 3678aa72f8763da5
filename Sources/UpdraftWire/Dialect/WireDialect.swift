import UpdraftCore

/// One way of putting the device protocol on a publish/subscribe wire: where each
/// message goes (the topic layout) and how its body is written (the codec).
///
/// The gateway, the reference device and the managed broker's ACL all take a dialect
/// value, so a new layout or body format is a new conforming type, not a rewrite.
/// ``UpdraftDialectV1`` is today's protocol (the DocC article "MQTT device protocol").
/// A dialect supplies the topic layout; the JSON codec, the subscriptions and the ACL
/// rules come from the extensions below and may be replaced by a dialect of its own.
public protocol WireDialect: Sendable {
    /// The topic of `kind` for the device whose topic level is `device`: a device id, or
    /// `+` (a subscription filter) or `%u` (a broker ACL pattern).
    func topic(_ kind: WireTopicKind, device: String) -> String
    /// Splits a device topic into device, kind and the levels after the kind; `nil` for
    /// a topic outside the layout. Runs for every message, chunks included.
    func parse(_ topic: String) -> WireTopic?
    /// Backend event stream; devices are denied it by the broker ACL.
    var eventsTopic: String { get }
    /// What the gateway's broker user may read and write (ACL `topic readwrite` filters):
    /// every device topic and the events topic.
    var gatewayTopicFilters: [String] { get }
    /// Control messages (everything but chunks) larger than this are refused.
    var maxControlBytes: Int { get }

    /// Decodes what a device sent.
    func decode(topic: String, payload: [UInt8]) -> Result<(DeviceID, DeviceMessage), WireDecodeError>
    /// Writes a body the gateway or a device sends.
    func encode<T: Encodable>(_ value: T) -> [UInt8]
    func decodeOffer(_ payload: [UInt8]) throws(UpdraftError) -> JobOffer
    func decodeError(_ payload: [UInt8]) throws(UpdraftError) -> ErrorReply
}

/// What a device topic carries.
public enum WireTopicKind: String, Sendable, CaseIterable {
    // Device to gateway.
    case announce, presence, download, progress, query
    // Gateway to device.
    case job, chunk, error, pending

    /// True for what devices publish and the gateway reads.
    public var fromDevice: Bool {
        switch self {
        case .announce, .presence, .download, .progress, .query: true
        case .job, .chunk, .error, .pending: false
        }
    }
}

/// A device topic split by its dialect.
public struct WireTopic: Sendable, Equatable {
    public var device: DeviceID
    public var kind: WireTopicKind
    /// The levels after the kind: `[job, offset]` for a chunk, empty for the rest.
    public var rest: [Substring]

    public init(device: DeviceID, kind: WireTopicKind, rest: [Substring] = []) {
        self.device = device
        self.kind = kind
        self.rest = rest
    }
}

/// A device message that could not be decoded; `device` is known when the topic was valid.
public struct WireDecodeError: Error, Sendable, Equatable {
    public var device: DeviceID?
    public var error: UpdraftError

    public init(device: DeviceID?, error: UpdraftError) {
        self.device = device
        self.error = error
    }
}

extension WireDialect {
    public func topic(_ kind: WireTopicKind, of device: DeviceID) -> String { topic(kind, device: device.rawValue) }

    /// Where one chunk goes: the chunk topic, then the job and the byte offset; the payload
    /// is the raw bytes at that offset.
    public func chunkTopic(of device: DeviceID, job: JobID, offset: Int) -> String {
        topic(.chunk, device: device.rawValue) + "/\(job.rawValue)/\(offset)"
    }

    /// What the gateway subscribes to: what every device publishes.
    public var gatewaySubscriptions: [String] {
        WireTopicKind.allCases.filter(\.fromDevice).map { topic($0, device: "+") }
    }

    /// What a device subscribes to: what the gateway sends it.
    public func deviceSubscriptions(of device: DeviceID) -> [String] {
        [topic(.job, of: device), topic(.error, of: device), topic(.pending, of: device), topic(.chunk, of: device) + "/#"]
    }
}
