import Foundation
import Testing
@testable import UpdraftCore

@Suite struct RateLimiterTests {
    let t0 = FleetHarness.t0

    @Test func tenPerMinuteOverSimulatedMinutes() {
        var limiter = RateLimiter(perMinute: 10)
        var grantedPerMinute: [Int] = []
        // Someone asks every second for five minutes.
        for minute in 0..<5 {
            var granted = 0
            for second in 0..<60 where limiter.tryAcquire(at: t0 + Double(minute * 60 + second)) { granted += 1 }
            grantedPerMinute.append(granted)
        }
        #expect(grantedPerMinute == [10, 10, 10, 10, 10])
    }

    @Test func slidingWindowHoldsAcrossMinuteBoundaries() {
        var limiter = RateLimiter(perMinute: 10)
        // Ten at the end of one minute...
        let endOfMinute = (0..<10).filter { _ in limiter.tryAcquire(at: t0 + 59) }.count
        #expect(endOfMinute == 10)
        // ...leave nothing at the start of the next: a fixed window would allow ten more.
        var granted = limiter.tryAcquire(at: t0 + 60)
        #expect(!granted)
        granted = limiter.tryAcquire(at: t0 + 118.9)
        #expect(!granted)
        #expect(limiter.nextAvailable(at: t0 + 100) == t0 + 119)
        granted = limiter.tryAcquire(at: t0 + 119)
        #expect(granted)
    }

    @Test func availabilityAndNextPermit() {
        var limiter = RateLimiter(perMinute: 3)
        #expect(limiter.available(at: t0) == 3)
        #expect(limiter.nextAvailable(at: t0) == nil)
        var granted = limiter.tryAcquire(at: t0)
        #expect(granted)
        granted = limiter.tryAcquire(at: t0 + 10)
        #expect(granted)
        granted = limiter.tryAcquire(at: t0 + 20)
        #expect(granted)
        #expect(limiter.available(at: t0 + 30) == 0)
        #expect(limiter.nextAvailable(at: t0 + 30) == t0 + 60)
        #expect(limiter.available(at: t0 + 60) == 1)
        #expect(limiter.available(at: t0 + 81) == 3)
    }

    @Test func burstThenSteady() {
        var limiter = RateLimiter(perMinute: 100)
        let burst = (0..<250).filter { _ in limiter.tryAcquire(at: t0) }.count
        #expect(burst == 100)
        #expect(limiter.granted.count == 100)
        let granted = limiter.tryAcquire(at: t0 + 60)
        #expect(granted)
        #expect(limiter.granted.count == 1, "old permits are forgotten")
    }

    @Test func roundTripsThroughJSON() throws {
        var limiter = RateLimiter(perMinute: 5)
        _ = limiter.tryAcquire(at: t0)
        #expect(try JSONDecoder().decode(RateLimiter.self, from: JSONEncoder().encode(limiter)) == limiter)
    }
}
