import Foundation

/// At most `perMinute` permits in any 60-second window: a sliding-window log, so the limit
/// holds exactly across minute boundaries (a token bucket would let a full bucket plus a
/// minute's refill through in one window, nearly twice the rate operators asked for). The
/// log holds at most `perMinute` dates (10,000 at Alibaba's highest rate), small enough to
/// persist; time is passed in.
public struct RateLimiter: Sendable, Equatable, Codable {
    public let perMinute: Int
    /// Times of the permits granted in the last minute, oldest first.
    public private(set) var granted: [Date]

    public static let window: TimeInterval = 60

    public init(perMinute: Int) {
        precondition(perMinute > 0, "a rate limit allows at least one per minute")
        self.perMinute = perMinute
        self.granted = []
    }

    /// Takes a permit if one is free at `now`.
    public mutating func tryAcquire(at now: Date) -> Bool {
        prune(at: now)
        guard granted.count < perMinute else { return false }
        granted.append(now)
        return true
    }

    public func available(at now: Date) -> Int {
        perMinute - granted.filter { $0 > now - Self.window }.count
    }

    /// When the next permit frees up, or `nil` if one is free now.
    public func nextAvailable(at now: Date) -> Date? {
        let live = granted.filter { $0 > now - Self.window }
        guard live.count >= perMinute else { return nil }
        // Permits leave the window in order; the one that frees a slot is the
        // (count - perMinute)-th oldest.
        return live[live.count - perMinute] + Self.window
    }

    private mutating func prune(at now: Date) {
        let cutoff = now - Self.window
        if let keep = granted.firstIndex(where: { $0 > cutoff }) {
            granted.removeFirst(keep)
        } else {
            granted.removeAll()
        }
    }
}
