import UpdraftCore

/// The MQTT topic tree of the device protocol. Every device topic is under
/// `<prefix>/d/<device id>/`, so one broker ACL pattern confines a device to its own.
public struct Topics: Sendable, Equatable {
    public let prefix: String

    /// `<prefix>/d/` as bytes: where every device topic starts.
    private let rootBytes: [UInt8]

    public init(prefix: String = "updraft") {
        self.prefix = prefix
        self.rootBytes = Array("\(prefix)/d/".utf8)
    }

    /// What a device topic carries.
    public enum Kind: String, Sendable, CaseIterable {
        // Device to gateway.
        case announce, presence, download, progress, query
        // Gateway to device.
        case job, chunk, error, pending
    }

    public func device(_ id: DeviceID, _ kind: Kind) -> String { "\(prefix)/d/\(id.rawValue)/\(kind.rawValue)" }

    /// `<prefix>/d/<id>/chunk/<job>/<offset>`: the payload is the raw bytes at that offset.
    public func chunk(_ id: DeviceID, job: JobID, offset: Int) -> String {
        "\(prefix)/d/\(id.rawValue)/chunk/\(job.rawValue)/\(offset)"
    }

    /// Backend event stream; devices are denied it by the broker ACL.
    public var events: String { "\(prefix)/events" }

    /// What the gateway subscribes to.
    public var gatewaySubscriptions: [String] {
        [Kind.announce, .presence, .download, .progress, .query].map { "\(prefix)/d/+/\($0.rawValue)" }
    }

    /// What a device subscribes to.
    public func deviceSubscriptions(_ id: DeviceID) -> [String] {
        [device(id, .job), device(id, .error), device(id, .pending), "\(prefix)/d/\(id.rawValue)/chunk/#"]
    }

    /// Splits a device topic into device id, kind and the remaining levels.
    ///
    /// Runs for every chunk a device receives and every message the gateway gets, so it
    /// walks the UTF-8 bytes once instead of splitting the whole topic into levels.
    public func parse(_ topic: String) -> (DeviceID, Kind, [Substring])? {
        let utf8 = topic.utf8
        guard utf8.starts(with: rootBytes) else { return nil }
        let idStart = utf8.index(utf8.startIndex, offsetBy: rootBytes.count)
        guard let idEnd = utf8[idStart...].firstIndex(of: Self.slash) else { return nil }
        let kindStart = utf8.index(after: idEnd)
        let kindEnd = utf8[kindStart...].firstIndex(of: Self.slash) ?? utf8.endIndex
        // UTF-8 views, not Character ranges: no grapheme checks on the hot path.
        guard let id = DeviceID(rawValue: String(Substring(utf8[idStart..<idEnd]))),
            let kind = Kind(rawValue: String(Substring(utf8[kindStart..<kindEnd])))
        else { return nil }
        guard kindEnd < utf8.endIndex else { return (id, kind, []) }
        var rest: [Substring] = []
        var start = utf8.index(after: kindEnd)
        while let end = utf8[start...].firstIndex(of: Self.slash) {
            rest.append(Substring(utf8[start..<end]))
            start = utf8.index(after: end)
        }
        rest.append(Substring(utf8[start...]))
        return (id, kind, rest)
    }

    private static let slash = UInt8(ascii: "/")
}
