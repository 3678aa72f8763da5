import Foundation

/// How a release reaches the devices it targets (Alibaba's batch options, plus delivery).
/// The release's ``FleetTarget`` decides its precedence tier; this narrows and paces it.
public struct BatchPolicy: Sendable, Equatable, Codable {
    /// Only devices running one of these versions are upgraded (empty: any version). A
    /// device already on the release's firmware stays claimed, so a finished device does
    /// not fall back to a lower-precedence release.
    public var sourceVersions: [FirmwareVersion]
    public var membership: Membership
    public var selection: Selection
    public var start: Start
    public var retry: RetryPolicy
    /// Fail a job that has not finished this long after the device's first progress
    /// report (Alibaba counts from there, so devices that stay offline do not time out).
    public var deviceTimeout: TimeInterval?
    /// At most this many offers in any 60-second window; `nil` for no limit.
    public var notificationsPerMinute: Int?
    public var delivery: Delivery

    public init(
        sourceVersions: [FirmwareVersion] = [], membership: Membership = .dynamic, selection: Selection = .all,
        start: Start = .now, retry: RetryPolicy = .none, deviceTimeout: TimeInterval? = nil,
        notificationsPerMinute: Int? = nil, delivery: Delivery = .immediate
    ) {
        self.sourceVersions = Array(Set(sourceVersions)).sorted()
        self.membership = membership
        self.selection = selection
        self.start = start
        self.retry = retry
        self.deviceTimeout = deviceTimeout
        self.notificationsPerMinute = notificationsPerMinute
        self.delivery = delivery
    }

    /// Which devices the batch covers over time.
    public enum Membership: String, Sendable, Codable, CaseIterable {
        /// The devices that matched when the release was created, and no others.
        case `static`
        /// Also devices that match later: newly announced, or announcing an old version.
        case dynamic
    }

    /// Narrows the release's target.
    public enum Selection: Sendable, Equatable, Codable {
        case all
        case groups([GroupID])
        case devices([DeviceID])
        /// A gray release: the devices whose hash bucket (by release and device id) falls
        /// under this percentage. Deterministic, so every evaluation picks the same devices,
        /// and a device joining later does not change who else is picked.
        case percentage(Double)
    }

    public enum Start: Sendable, Equatable, Codable {
        case now
        case at(Date)
    }

    /// Gradual follows Particle: the device gets the offer at its next session, so a
    /// release does not wake the whole online fleet at once. Immediate offers online
    /// devices now (and offline ones when they connect).
    public enum Delivery: String, Sendable, Codable, CaseIterable {
        case gradual
        case immediate
    }

    /// When the release starts, given when it was created.
    public func startTime(createdAt: Date) -> Date {
        switch start {
        case .now: createdAt
        case .at(let date): max(date, createdAt)
        }
    }

    /// The policy of a lock's release: one device, no pacing, no retry (the operator locks
    /// again to try again).
    public static func lock(_ delivery: LockDelivery) -> BatchPolicy {
        BatchPolicy(membership: .dynamic, delivery: delivery == .now ? .immediate : .gradual)
    }

    /// Whether the device matches the source-version filter.
    func acceptsSource(_ version: FirmwareVersion?, target: FirmwareVersion) -> Bool {
        if sourceVersions.isEmpty { return true }
        guard let version else { return false }
        return version == target || sourceVersions.contains(version)
    }

    func selects(_ device: FleetDevice, release: ReleaseID) -> Bool {
        switch selection {
        case .all: return true
        case .groups(let groups): return groups.contains { device.profile.isMember(of: $0) }
        case .devices(let ids): return ids.contains(device.id)
        case .percentage(let percent):
            return Double(FleetHash.bucket(release: release, device: device.id)) < percent * Double(FleetHash.buckets) / 100
        }
    }

    /// Checks the options an operator gave; the messages name the CLI flags.
    public func validate(now: Date) throws(UpdraftError) {
        switch selection {
        case .all: break
        case .groups(let groups) where groups.isEmpty:
            throw UpdraftError("invalid_selection", "A group selection needs at least one group: pass --select-group GROUP.")
        case .devices(let ids) where ids.isEmpty:
            throw UpdraftError("invalid_selection", "A device selection needs at least one device: pass --select-devices ID[,ID...].")
        case .percentage(let percent) where !(percent > 0 && percent <= 100):
            throw UpdraftError("invalid_percentage", "The gray percentage must be more than 0 and at most 100 (got \(percent)).")
        default: break
        }
        if case .at(let date) = start, date < now {
            throw UpdraftError(
                "schedule_in_past",
                "The start time \(date.formatted(.iso8601)) is in the past. Give a future time, or leave --start-at out to start now.")
        }
        try retry.validate()
        if let deviceTimeout, !(deviceTimeout > 0) {
            throw UpdraftError("invalid_timeout", "The per-device timeout must be a positive number of seconds (got \(deviceTimeout)).")
        }
        if let rate = notificationsPerMinute, rate < 1 {
            throw UpdraftError("invalid_rate", "The notification rate must be at least 1 device per minute (got \(rate)); leave --rate out for no limit.")
        }
    }

    enum CodingKeys: String, CodingKey {
        case sourceVersions = "source_versions", membership, selection, start, retry
        case deviceTimeout = "device_timeout", notificationsPerMinute = "notifications_per_minute", delivery
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            sourceVersions: try c.decodeIfPresent([FirmwareVersion].self, forKey: .sourceVersions) ?? [],
            membership: try c.decodeIfPresent(Membership.self, forKey: .membership) ?? .dynamic,
            selection: try c.decodeIfPresent(Selection.self, forKey: .selection) ?? .all,
            start: try c.decodeIfPresent(Start.self, forKey: .start) ?? .now,
            retry: try c.decodeIfPresent(RetryPolicy.self, forKey: .retry) ?? .none,
            deviceTimeout: try c.decodeIfPresent(TimeInterval.self, forKey: .deviceTimeout),
            notificationsPerMinute: try c.decodeIfPresent(Int.self, forKey: .notificationsPerMinute),
            delivery: try c.decodeIfPresent(Delivery.self, forKey: .delivery) ?? .immediate)
    }
}

/// Retry after failure: wait `interval` after the failed attempt, then try again, at most
/// `maxRetries` times (so at most `maxRetries + 1` attempts per device).
public struct RetryPolicy: Sendable, Equatable, Codable {
    public var interval: TimeInterval
    public var maxRetries: Int

    public init(interval: TimeInterval, maxRetries: Int) {
        (self.interval, self.maxRetries) = (interval, maxRetries)
    }

    public static let none = RetryPolicy(interval: 0, maxRetries: 0)

    /// Alibaba offers at most 5; we allow a little more but keep a bound so a broken image
    /// cannot keep a device busy forever.
    public static let maxRetriesLimit = 10

    /// A device that refused the offer (wrong product, bad signature, rollback) would refuse
    /// it again; every other failure may be transient.
    public static func isRetryable(_ reason: FailureReason?) -> Bool { reason != .rejected }

    public func validate() throws(UpdraftError) {
        guard interval >= 0 else {
            throw UpdraftError("invalid_retry", "The retry interval cannot be negative (got \(interval) s).")
        }
        guard (0...Self.maxRetriesLimit).contains(maxRetries) else {
            throw UpdraftError("invalid_retry", "Retries must be between 0 and \(Self.maxRetriesLimit) (got \(maxRetries)).")
        }
    }
}

/// Deterministic device buckets for gray releases and rollout order. Not Swift's `Hasher`,
/// which is seeded per process: the same device must land in the same bucket on every
/// evaluation, in every process, on every machine.
public enum FleetHash {
    /// Buckets are basis points, so percentages down to 0.01 % are exact.
    public static let buckets: UInt64 = 10_000

    /// Salted by the release so that different releases canary different devices: one
    /// unlucky device is not always first.
    public static func bucket(release: ReleaseID, device: DeviceID) -> UInt64 { value(release: release, device: device) % buckets }

    static func value(release: ReleaseID, device: DeviceID) -> UInt64 {
        // FNV-1a, then a 64-bit finaliser (splitmix64) so similar ids spread evenly.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in release.rawValue.utf8 + [0x2F] + device.rawValue.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        hash ^= hash >> 30
        hash &*= 0xbf58_476d_1ce4_e5b9
        hash ^= hash >> 27
        hash &*= 0x94d0_49bb_1331_11eb
        hash ^= hash >> 31
        return hash
    }
}
