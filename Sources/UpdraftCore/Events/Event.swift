import Foundation

/// What an event is about. The raw values are part of the event stream contract.
public enum EventKind: String, Sendable, Codable, CaseIterable {
    case firmwareAdded = "firmware.added"
    /// An operator removed a firmware no release refers to (`updraft firmware delete`).
    case firmwareDeleted = "firmware.deleted"
    case releaseCreated = "release.created"
    case jobCreated = "job.created"
    /// An accepted job transition (including download percent changes).
    case jobTransition = "job.transition"
    /// A transition the state machine refused; the job is unchanged.
    case jobRefused = "job.refused"
    case deviceOnline = "device.online"
    case deviceOffline = "device.offline"
    case deviceAnnounced = "device.announced"
    /// A device sent more than its budget of recordable messages; `detail` says how many
    /// were dropped and over which period (see ``DeviceEventBudget``).
    case deviceRateLimited = "device.rate_limited"
    /// A fleet release's rollout changed (stage advanced, paused, resumed, completed,
    /// aborted, canceled), by the planner or by an operator command.
    case rolloutChanged = "release.rollout"
    /// An operator changed a fleet release or a device's fleet profile (group, development,
    /// lock) from the CLI: the running gateway reloads it.
    case fleetCommand = "fleet.command"
    /// An operator revoked a device's credentials (`updraft device revoke`); `detail` says
    /// who. The gateway cancels its active job (reason `revoked`) and refuses it from then
    /// on; `updraft device provision` re-admits it (a `fleet.command` "readmitted").
    case deviceRevoked = "device.revoked"
    /// A firmware's verification status changed.
    case verificationStatus = "firmware.verification"
    /// A webhook failed for `webhooks.disable_after` without a success and is no longer
    /// posted to; `detail` says which, since when, and the last error.
    case webhookDisabled = "webhook.disabled"
    /// An operator re-enabled a disabled webhook (`updraft webhook enable`); it resumes at its cursor.
    case webhookEnabled = "webhook.enabled"
}

/// One entry of the event log. The store assigns `sequence`: gap-free, starting at 1,
/// the order in which entries were committed.
public struct UpdraftEvent: Sendable, Equatable, Codable {
    public var sequence: Int64
    public var time: Date
    public var kind: EventKind
    public var deviceID: DeviceID?
    public var jobID: JobID?
    public var releaseID: ReleaseID?
    public var firmwareID: FirmwareID?
    public var from: JobState?
    public var to: JobState?
    public var progress: Int?
    public var reason: FailureReason?
    public var detail: String?
    /// Who asked for the change: `cli:<os user>` for a command run on the gateway's host,
    /// the token's name for the HTTP API; `nil` for what devices and the gateway itself do.
    public var actor: String?

    public init(
        kind: EventKind, time: Date, deviceID: DeviceID? = nil, jobID: JobID? = nil, releaseID: ReleaseID? = nil,
        firmwareID: FirmwareID? = nil, from: JobState? = nil, to: JobState? = nil, progress: Int? = nil,
        reason: FailureReason? = nil, detail: String? = nil, actor: String? = nil, sequence: Int64 = 0
    ) {
        self.sequence = sequence
        self.time = time
        self.kind = kind
        self.deviceID = deviceID
        self.jobID = jobID
        self.releaseID = releaseID
        self.firmwareID = firmwareID
        self.from = from
        self.to = to
        self.progress = progress
        self.reason = reason
        self.detail = detail
        self.actor = actor
    }

    enum CodingKeys: String, CodingKey {
        case sequence = "seq", time, kind, deviceID = "device", jobID = "job", releaseID = "release"
        case firmwareID = "firmware", from, to, progress, reason, detail, actor
    }

    /// An event for a job, stamped with the job's current state.
    public static func job(_ kind: EventKind, _ job: Job, from: JobState? = nil, detail: String? = nil, time: Date) -> UpdraftEvent {
        UpdraftEvent(
            kind: kind, time: time, deviceID: job.deviceID, jobID: job.id, releaseID: job.releaseID,
            firmwareID: job.firmwareID, from: from, to: job.state, progress: job.progress,
            reason: job.state == .failed ? job.failure : nil, detail: detail ?? (job.state == .failed ? job.detail : nil))
    }

    /// This event, naming `actor` as who asked for it.
    public func by(_ actor: String?) -> UpdraftEvent {
        var event = self
        event.actor = actor
        return event
    }

    /// JSON as published on the events topic and printed by `updraft events`.
    public func jsonLine() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}
