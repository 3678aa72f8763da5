import Foundation

/// How much one device can make the gateway record: refusals, announcements and version
/// changes, the events a device causes by sending instead of by progressing its job. Per
/// device, at most `perMinute` such events in any minute (a ``RateLimiter``); beyond that
/// the message is dropped, answered `rate_limited`, and counted. The first event a device
/// is allowed after a dropped stretch is preceded by one `device.rate_limited` event that
/// says how many were dropped. Progress that the job state machine accepts never counts.
/// Pure: time is passed in.
public struct DeviceEventBudget: Sendable {
    public let perMinute: Int
    private var devices: [DeviceID: Entry] = [:]
    private var decisions = 0

    private struct Entry: Sendable {
        var limiter: RateLimiter
        /// Messages dropped since the last event recorded, and when the first was.
        var dropped = 0
        var droppedSince: Date?
    }

    /// What was dropped before an event that may now be recorded.
    public struct Dropped: Sendable, Equatable {
        public var count: Int
        public var from: Date
        public var to: Date
    }

    public enum Decision: Sendable, Equatable {
        /// Record the event; first record a `device.rate_limited` summary when `dropped` is set.
        case record(dropped: Dropped?)
        /// Drop the message and answer `rate_limited`; a permit frees up at `retryAt`.
        case drop(retryAt: Date)
    }

    public init(perMinute: Int = 30) {
        self.perMinute = max(1, perMinute)
    }

    public mutating func admit(_ device: DeviceID, at now: Date) -> Decision {
        decisions += 1
        if decisions % 4096 == 0 { forgetIdle(at: now) }
        var entry = devices[device] ?? Entry(limiter: RateLimiter(perMinute: perMinute))
        defer { devices[device] = entry }
        guard entry.limiter.tryAcquire(at: now) else {
            entry.dropped += 1
            if entry.droppedSince == nil { entry.droppedSince = now }
            return .drop(retryAt: entry.limiter.nextAvailable(at: now) ?? now)
        }
        guard entry.dropped > 0, let since = entry.droppedSince else { return .record(dropped: nil) }
        let dropped = Dropped(count: entry.dropped, from: since, to: now)
        entry.dropped = 0
        entry.droppedSince = nil
        return .record(dropped: dropped)
    }

    /// Devices tracked (for tests: idle ones are forgotten).
    public var trackedDevices: Int { devices.count }

    /// Forgets devices with nothing in their window and nothing dropped, so the table
    /// stays the size of the devices that spoke in the last minute.
    public mutating func forgetIdle(at now: Date) {
        devices = devices.filter { $0.value.dropped > 0 || $0.value.limiter.available(at: now) < perMinute }
    }
}
