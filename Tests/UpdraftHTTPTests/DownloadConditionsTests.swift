import Testing

@testable import UpdraftHTTP

/// Range and conditional headers of the firmware download, decided without a server.
@Suite struct DownloadConditionsTests {
    let tag = "\"abc\""

    func answer(_ range: String?, ifRange: String? = nil, ifNoneMatch: [String] = [], size: Int = 100) -> DownloadConditions {
        DownloadConditions.evaluate(size: size, etag: tag, ifNoneMatch: ifNoneMatch, ifRange: ifRange, range: range)
    }

    @Test func rangesAreClampedOrRefused() {
        #expect(answer(nil) == .whole)
        #expect(answer("bytes=0-9") == .part(0...9))
        #expect(answer("bytes=90-200") == .part(90...99))
        #expect(answer("bytes=50-") == .part(50...99))
        #expect(answer("bytes=-10") == .part(90...99))
        #expect(answer("bytes=-1000") == .part(0...99))
        #expect(answer(" bytes=1 - 2 ") == .part(1...2))
        #expect(answer("bytes=100-") == .unsatisfiable)
        #expect(answer("bytes=-0") == .unsatisfiable)
        #expect(answer("bytes=99999999999999999999999999-") == .unsatisfiable)
        for ignored in ["bytes=5-2", "bytes=0-1,3-4", "lines=0-1", "bytes=a-", "bytes=-", "bytes=1-b", "bytes=+1-2"] {
            #expect(answer(ignored) == .whole, "\(ignored)")
        }
    }

    @Test func conditionsComeBeforeTheRange() {
        #expect(answer("bytes=0-9", ifNoneMatch: [tag]) == .notModified)
        #expect(answer(nil, ifNoneMatch: ["\"x\", W/\"abc\""]) == .notModified)
        #expect(answer(nil, ifNoneMatch: ["*"]) == .notModified)
        #expect(answer(nil, ifNoneMatch: ["\"abcd\""]) == .whole)
        #expect(answer("bytes=0-9", ifRange: tag) == .part(0...9))
        #expect(answer("bytes=0-9", ifRange: "W/\"abc\"") == .whole)
        #expect(answer("bytes=0-9", ifRange: "Tue, 15 Nov 1994 08:12:31 GMT") == .whole)
        #expect(answer("bytes=500-", ifRange: "\"other\"") == .whole)
    }
}
