import Testing

@testable import UpdraftApp

/// A store that keeps failing is logged once per interval, with a count, not on every
/// retry of the 20 ms flush loop (22 lines a second before).
@Suite struct FailureLogTests {
    @Test func logsTheFirstFailureThenOncePerIntervalAndTheRecovery() {
        var log = FailureLog(interval: .seconds(10))
        let start = ContinuousClock.now
        #expect(log.failed(at: start) == 1)
        for step in 1...499 {
            #expect(log.failed(at: start + .milliseconds(20 * step)) == nil)
        }
        #expect(log.failed(at: start + .seconds(10)) == 501)
        #expect(log.failed(at: start + .seconds(11)) == nil)
        #expect(log.recovered() == 502)
        #expect(log.recovered() == nil)
        #expect(log.failed(at: start + .seconds(12)) == 1)
    }
}
