/// One broker access rule: a user (or, as a pattern, every device) may read, write or both
/// on a topic filter. The managed broker writes a dialect's rules into its ACL file.
public struct BrokerRule: Sendable, Equatable {
    public enum Access: String, Sendable {
        case read, write, readwrite
        /// mosquitto checks a user's deny rules before anything that grants access,
        /// patterns included.
        case deny
    }

    public var access: Access
    public var filter: String
    /// A pattern applies to every client, with `%u` standing for its username (the
    /// device id); a plain rule applies to the user it is listed under.
    public var isPattern: Bool

    public init(_ access: Access, _ filter: String, isPattern: Bool = false) {
        self.access = access
        self.filter = filter
        self.isPattern = isPattern
    }

    /// The rule as a line of a mosquitto `acl_file`.
    public var mosquittoLine: String { "\(isPattern ? "pattern" : "topic") \(access.rawValue) \(filter)" }
}

extension WireDialect {
    /// The gateway reads and writes every device topic and the events topic.
    public var gatewayRules: [BrokerRule] { gatewayTopicFilters.map { BrokerRule(.readwrite, $0) } }

    /// Backend services may read the event stream, nothing else.
    public var eventsRules: [BrokerRule] { [BrokerRule(.read, eventsTopic)] }

    /// A backend consumer's account `user`: the event stream, read only, and none of the
    /// device topics that the device patterns would otherwise grant it under its own
    /// username (it must not pose as a device called like itself).
    public func consumerRules(user: String) -> [BrokerRule] {
        eventsRules + deviceRules.map { BrokerRule(.deny, $0.filter.replacingOccurrences(of: "%u", with: user)) }
    }

    /// Every device (username = device id) may only use its own topics, each in its
    /// direction. mosquitto checks patterns in order for every message it delivers to a
    /// device and stops at the first match: the chunk stream comes first, it is most of
    /// the traffic.
    public var deviceRules: [BrokerRule] {
        let order: [WireTopicKind] = [.chunk, .download, .progress, .job, .error, .pending, .announce, .presence, .query]
        return order.map { kind in
            let filter = topic(kind, device: "%u") + (kind == .chunk ? "/#" : "")
            return BrokerRule(kind.fromDevice ? .write : .read, filter, isPattern: true)
        }
    }
}
