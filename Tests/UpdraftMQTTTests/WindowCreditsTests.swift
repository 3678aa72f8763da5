import Testing
import UpdraftCore
@testable import UpdraftMQTT
import UpdraftWire

@Suite struct WindowCreditsTests {
    let hog: DeviceID = "hog-1"
    let calm: DeviceID = "calm-1"

    @Test func aDeviceGetsItsCreditsAndNoMoreUntilAWindowCloses() {
        var credits = WindowCredits(limits: ChunkFlowLimits(windowsPerDevice: 2, bytesInFlight: 1 << 20))
        let granted = (0..<3).map { _ in credits.openWindow(for: hog) }
        #expect(granted == [true, true, false])
        let other = credits.openWindow(for: calm)
        #expect(other, "another device's credit is its own")
        credits.reserve(100)
        credits.closeWindow(for: hog, bytes: 100)
        let again = credits.openWindow(for: hog)
        #expect(again)
        #expect(!credits.hasCredit(hog))
        #expect(credits.bytes == 0)
    }

    @Test func theByteBudgetTakesAnyWindowWhenIdleAndNoMoreThanItsSizeOtherwise() {
        var credits = WindowCredits(limits: ChunkFlowLimits(windowsPerDevice: 2, bytesInFlight: 1000))
        #expect(credits.fits(5000), "a window larger than the budget is not stuck forever")
        credits.reserve(600)
        #expect(credits.fits(400))
        #expect(!credits.fits(401))
        credits.closeWindow(for: hog, bytes: 600)
        #expect(credits.windows[hog] == nil)
    }

    @Test func windowsWaitForTheBudgetInOrder() async {
        let flow = ChunkFlow(limits: ChunkFlowLimits(windowsPerDevice: 4, bytesInFlight: 1000))
        await flow.reserve(800)
        let waiting = Task { await flow.reserve(500) }
        // Not before the first window's bytes came back.
        flow.closeWindow(for: hog, bytes: 800)
        await waiting.value
        #expect(flow.bytesInFlight == 500)
    }

    @Test func aRefusalIsAnsweredOncePerClosedWindow() {
        var credits = WindowCredits(limits: ChunkFlowLimits(windowsPerDevice: 1, bytesInFlight: 1000))
        _ = credits.openWindow(for: hog)
        let answers = (0..<5).map { _ in credits.answerRefusal(for: hog) }
        #expect(answers == [true, false, false, false, false])
        credits.closeWindow(for: hog, bytes: 0)
        let afterClose = credits.answerRefusal(for: hog)
        #expect(afterClose)
    }

    @Test func aDeviceIsSentTwiceItsImageAtOnceThenOneImageAMinute() {
        var allowance = DownloadAllowance(imagesAtOnce: 2, refill: .seconds(60))
        let start = ContinuousClock.now
        let job: JobID = "j1"
        // A download and one full restart of a 1000-byte image, in windows of 250.
        let first = (0..<8).map { _ in allowance.spend(250, device: hog, job: job, imageSize: 1000, at: start) }
        #expect(first == Array(repeating: true, count: 8))
        let asked = allowance.spend(250, device: hog, job: job, imageSize: 1000, at: start)
        #expect(!asked, "the same bytes asked for a third time at once are refused")
        let calmFirst = allowance.spend(1000, device: calm, job: "j2", imageSize: 1000, at: start)
        #expect(calmFirst, "another device's allowance is its own")
        let later = allowance.spend(250, device: hog, job: job, imageSize: 1000, at: start + .seconds(15))
        #expect(later, "a quarter of the image comes back in a quarter of a minute")
        let newJob = allowance.spend(2000, device: hog, job: "j3", imageSize: 1000, at: start + .seconds(15))
        #expect(newJob, "a new job starts with a full allowance")
    }

    @Test func aWindowTakesItsCreditAndItsAllowanceTogetherOrNeither() {
        let flow = ChunkFlow(limits: ChunkFlowLimits(windowsPerDevice: 2, bytesInFlight: 1 << 20))
        let job: JobID = "j1"
        #expect(flow.openWindow(for: hog, job: job, bytes: 1000, imageSize: 1000) == nil)
        #expect(flow.openWindow(for: hog, job: job, bytes: 1000, imageSize: 1000) == nil)
        #expect(flow.openWindow(for: hog, job: job, bytes: 1000, imageSize: 1000) == .noCredit)
        flow.closeWindow(for: hog, bytes: 0)
        // Twice the image went out: the allowance refuses, and the credit stays free.
        #expect(flow.openWindow(for: hog, job: job, bytes: 1000, imageSize: 1000) == .allowanceSpent)
        #expect(flow.hasCredit(hog))
    }
}
