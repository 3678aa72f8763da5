import Foundation
import UpdraftCore

/// `device list --json` rows and `device show --json` (which adds should_run, active_job
/// and history): the fields of the API's Device and DeviceDetail.
public struct DeviceView: Codable, Sendable {
    public var id: String
    public var product, version, transport: String?
    public var online, acceptsUpdates, development: Bool
    public var firstSeen, lastSeen, revokedAt: Date?
    public var groups: [String]
    public var lock: String?
    /// The state of its active job; absent when it has none.
    public var jobState: String?
    public var shouldRun: String?
    public var activeJob: JobView?
    public var history: [UpdraftEvent]?
    /// How and since when it is locked (local only; not printed as JSON).
    public var lockNote: String?

    public init(_ d: Device, _ profile: DeviceFleetProfile, job: Job?) {
        (id, product, version, transport) = (d.id.rawValue, d.product?.rawValue, d.version?.rawValue, d.transport?.rawValue)
        (online, acceptsUpdates, development) = (d.online, d.acceptsUpdates, profile.isDevelopment)
        (firstSeen, lastSeen, revokedAt) = (d.firstSeen, d.lastSeen, profile.revokedAt)
        (groups, lock, jobState) = (profile.groups.map(\.rawValue), profile.lock?.firmware.id.rawValue, job?.state.rawValue)
        lockNote = profile.lock.map { "\($0.delivery == .now ? "now" : "at next session"), since \($0.lockedAt.formatted(.iso8601))" }
    }

    enum CodingKeys: String, CodingKey {
        case id, product, version, transport, online, acceptsUpdates = "accepts_updates", development
        case firstSeen = "first_seen", lastSeen = "last_seen", revokedAt = "revoked_at", groups, lock, jobState = "job_state"
        case shouldRun = "should_run", activeJob = "active_job", history
    }
}

/// What `device list` filters on (every one given must hold), as `GET /v1/devices`.
public struct DeviceQuery: Sendable {
    public var product: ProductID?
    public var version: FirmwareVersion?
    public var group: GroupID?
    public var online: Bool?
    /// A job state, or `idle`: no active job.
    public var state: String?

    public init(product: ProductID? = nil, version: FirmwareVersion? = nil, group: GroupID? = nil, online: Bool? = nil, state: String? = nil) {
        (self.product, self.version, self.group, self.online, self.state) = (product, version, group, online, state)
    }

    public func matches(_ view: DeviceView) -> Bool {
        if let product, view.product != product.rawValue { return false }
        if let version, view.version != version.rawValue { return false }
        if let group, !view.groups.contains(group.rawValue) { return false }
        if let online, view.online != online { return false }
        if let state, (view.jobState ?? "idle") != state { return false }
        return true
    }
}

/// `job show --json`, and `active_job` in `device show --json`.
public struct JobView: Codable, Sendable {
    public var job, release, device, firmware, targetVersion, state: String
    public var progress: Int
    public var failure, detail: String?
    public var createdAt, updatedAt: Date

    public init(_ job: Job) {
        (self.job, release, device, firmware) = (job.id.rawValue, job.releaseID.rawValue, job.deviceID.rawValue, job.firmwareID.rawValue)
        (targetVersion, state, progress) = (job.targetVersion.rawValue, job.state.rawValue, job.progress)
        (failure, detail, createdAt, updatedAt) = (job.failure?.rawValue, job.detail, job.createdAt, job.updatedAt)
    }

    enum CodingKeys: String, CodingKey {
        case job, release, device, firmware, targetVersion = "target_version", state, progress, failure, detail
        case createdAt = "created_at", updatedAt = "updated_at"
    }
}

/// One product of `stats versions --json`.
public struct VersionStatsRow: Codable, Sendable {
    public struct Share: Codable, Sendable {
        public var version: String
        public var devices: Int
        public var fraction: Double
    }
    public var product: String
    public var total: Int
    public var versions: [Share]
    public var others, unknown: Int
}

/// One value as another of the same JSON (the API's generated types as the CLI's views).
func convert<T: Decodable>(_ value: some Encodable, to type: T.Type = T.self) throws -> T {
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try decoder.decode(T.self, from: try encoder.encode(value))
}
