import Foundation

/// When a job's device last did something, tracked by the engine next to the job. The
/// planner needs it for the per-device timeout (counted from the first progress report),
/// stall detection (no chunk request or report for a while) and re-offers (one offer per
/// session). Kept apart from ``Job`` so the job's stored shape does not change; losing it
/// on a restart only restarts those clocks.
public struct JobActivity: Sendable, Equatable, Codable {
    public private(set) var firstProgressAt: Date?
    /// The last progress report or chunk request.
    public private(set) var lastActivityAt: Date?
    public private(set) var lastOfferedAt: Date?
    /// When the planner last re-offered because the download stalled.
    public private(set) var nudgedAt: Date?

    public init(firstProgressAt: Date? = nil, lastActivityAt: Date? = nil, lastOfferedAt: Date? = nil, nudgedAt: Date? = nil) {
        self.firstProgressAt = firstProgressAt
        self.lastActivityAt = lastActivityAt
        self.lastOfferedAt = lastOfferedAt
        self.nudgedAt = nudgedAt
    }

    /// The device reported progress (any ``DeviceReport``).
    public mutating func progressed(at now: Date) {
        if firstProgressAt == nil { firstProgressAt = now }
        lastActivityAt = now
    }

    /// The device asked for a chunk: it is alive, though it reports no percent.
    public mutating func chunkRequested(at now: Date) {
        lastActivityAt = now
    }

    /// The engine sent the offer (an ``FleetAction/offer(_:device:nudge:)`` or its own).
    public mutating func offered(at now: Date, nudge: Bool = false) {
        lastOfferedAt = now
        if nudge { nudgedAt = now }
    }

    enum CodingKeys: String, CodingKey {
        case firstProgressAt = "first_progress_at", lastActivityAt = "last_activity_at"
        case lastOfferedAt = "last_offered_at", nudgedAt = "nudged_at"
    }
}
