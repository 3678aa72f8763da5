import UpdraftCore

/// Today's device protocol (the DocC article "MQTT device protocol"): every device topic
/// is `<prefix>/d/<device id>/<kind>`, so one broker ACL pattern confines a device to its
/// own; events go to `<prefix>/events`; bodies are JSON.
public struct UpdraftDialectV1: WireDialect, Equatable {
    public let prefix: String
    public let maxControlBytes: Int
    private let layout: DeviceTopicLayout

    public init(prefix: String = "updraft", maxControlBytes: Int = 4096) {
        self.prefix = prefix
        self.maxControlBytes = maxControlBytes
        self.layout = DeviceTopicLayout(head: "\(prefix)/d/", middle: "/")
    }

    public func topic(_ kind: WireTopicKind, device: String) -> String { layout.topic(kind, device: device) }
    public func parse(_ topic: String) -> WireTopic? { layout.parse(topic) }
    public var eventsTopic: String { "\(prefix)/events" }
    /// The whole tree, events included.
    public var gatewayTopicFilters: [String] { ["\(prefix)/#"] }
}

/// A dialect made of a ``DeviceTopicLayout``, an events topic and the gateway's filters,
/// with the JSON codec: a new topic layout as a value, no new type.
public struct LayoutDialect: WireDialect {
    public let layout: DeviceTopicLayout
    public let eventsTopic: String
    public let gatewayTopicFilters: [String]
    public let maxControlBytes: Int

    /// - Parameter gatewayTopicFilters: must cover every device topic and `eventsTopic`.
    public init(layout: DeviceTopicLayout, eventsTopic: String, gatewayTopicFilters: [String], maxControlBytes: Int = 4096) {
        self.layout = layout
        self.eventsTopic = eventsTopic
        self.gatewayTopicFilters = gatewayTopicFilters
        self.maxControlBytes = maxControlBytes
    }

    public func topic(_ kind: WireTopicKind, device: String) -> String { layout.topic(kind, device: device) }
    public func parse(_ topic: String) -> WireTopic? { layout.parse(topic) }
}

extension LayoutDialect: CustomStringConvertible {
    public var description: String { layout.head + "<device>" + layout.middle + "<kind>" }
}

/// A topic layout `<head><device><middle><kind>[/<level>...]`: what most dialects need,
/// with a parser fast enough for the chunk stream. `head` ends with `/`, `middle` starts
/// and ends with it (`/` alone puts the kind right after the device).
public struct DeviceTopicLayout: Sendable, Equatable {
    public let head: String
    public let middle: String
    private let headBytes: [UInt8]
    private let middleBytes: [UInt8]

    public init(head: String, middle: String) {
        precondition(head.hasSuffix("/") && middle.hasPrefix("/") && middle.hasSuffix("/"), "topic levels are separated by /")
        self.head = head
        self.middle = middle
        self.headBytes = Array(head.utf8)
        self.middleBytes = Array(middle.utf8)
    }

    public func topic(_ kind: WireTopicKind, device: String) -> String { head + device + middle + kind.rawValue }

    /// Walks the UTF-8 bytes once instead of splitting the whole topic into levels: this
    /// runs for every chunk a device receives and every message the gateway gets.
    public func parse(_ topic: String) -> WireTopic? {
        let utf8 = topic.utf8
        guard utf8.starts(with: headBytes) else { return nil }
        let idStart = utf8.index(utf8.startIndex, offsetBy: headBytes.count)
        guard let idEnd = utf8[idStart...].firstIndex(of: Self.slash), utf8[idEnd...].starts(with: middleBytes) else { return nil }
        let kindStart = utf8.index(idEnd, offsetBy: middleBytes.count)
        let kindEnd = utf8[kindStart...].firstIndex(of: Self.slash) ?? utf8.endIndex
        // UTF-8 views, not Character ranges: no grapheme checks on the hot path.
        guard let id = DeviceID(rawValue: String(Substring(utf8[idStart..<idEnd]))),
            let kind = WireTopicKind(rawValue: String(Substring(utf8[kindStart..<kindEnd])))
        else { return nil }
        guard kindEnd < utf8.endIndex else { return WireTopic(device: id, kind: kind) }
        var rest: [Substring] = []
        var start = utf8.index(after: kindEnd)
        while let end = utf8[start...].firstIndex(of: Self.slash) {
            rest.append(Substring(utf8[start..<end]))
            start = utf8.index(after: end)
        }
        rest.append(Substring(utf8[start...]))
        return WireTopic(device: id, kind: kind, rest: rest)
    }

    private static let slash = UInt8(ascii: "/")
}
