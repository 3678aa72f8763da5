import UpdraftCore

/// The MQTT topic tree of the device protocol. Every device topic is under
/// `<prefix>/d/<device id>/`, so one broker ACL pattern confines a device to its own.
public struct Topics: Sendable, Equatable {
    public let prefix: String

    public init(prefix: String = "updraft") { self.prefix = prefix }

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
    public func parse(_ topic: String) -> (DeviceID, Kind, [Substring])? {
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        let prefixLevels = prefix.split(separator: "/", omittingEmptySubsequences: false)
        guard levels.count >= prefixLevels.count + 3,
            levels.starts(with: prefixLevels),
            levels[prefixLevels.count] == "d",
            let id = DeviceID(rawValue: String(levels[prefixLevels.count + 1])),
            let kind = Kind(rawValue: String(levels[prefixLevels.count + 2]))
        else { return nil }
        return (id, kind, Array(levels[(prefixLevels.count + 3)...]))
    }
}
