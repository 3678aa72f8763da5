import Foundation
import Testing
import UpdraftCore
import UpdraftWire

@Suite struct WireCodecTests {
    let codec = UpdraftDialectV1(prefix: "updraft", maxControlBytes: 512)

    func decode(_ topic: String, _ text: String) -> Result<(DeviceID, DeviceMessage), WireDecodeError> {
        codec.decode(topic: topic, payload: Array(text.utf8))
    }

    func errorCode(_ topic: String, _ text: String) -> String? {
        if case .failure(let failure) = decode(topic, text) { return failure.error.code }
        return nil
    }

    @Test func announce() throws {
        let (id, message) = try decode("updraft/d/dev-1/announce", #"{"product":"thermo","version":"1.0","accepts_updates":false}"#).get()
        #expect(id == "dev-1")
        #expect(message == .announce(Announcement(product: "thermo", version: "1.0", acceptsUpdates: false)))
        let (_, defaulted) = try decode("updraft/d/dev-1/announce", #"{"product":"thermo","version":"1.0"}"#).get()
        #expect(defaulted == .announce(Announcement(product: "thermo", version: "1.0", acceptsUpdates: true)))
        let (_, booted) = try decode("updraft/d/dev-1/announce", #"{"product":"thermo","version":"1.0","boot":18446744073709551615}"#).get()
        #expect(booted == .announce(Announcement(product: "thermo", version: "1.0", boot: .max)))
    }

    @Test func presence() throws {
        #expect(try decode("updraft/d/a/presence", "online").get().1 == .presence(online: true))
        #expect(try decode("updraft/d/a/presence", "offline").get().1 == .presence(online: false))
        #expect(errorCode("updraft/d/a/presence", "maybe") == "malformed_presence")
    }

    @Test func downloadAndProgress() throws {
        let (_, download) = try decode("updraft/d/a/download", #"{"job":"j1","offset":4096,"count":8,"size":1024}"#).get()
        #expect(download == .download(DownloadRequest(job: "j1", offset: 4096, count: 8, size: 1024)))
        let (_, progress) = try decode("updraft/d/a/progress", #"{"job":"j1","state":"downloading","percent":42}"#).get()
        #expect(progress == .progress("j1", .downloading(percent: 42)))
        let (_, failed) = try decode("updraft/d/a/progress", #"{"job":"j1","state":"failed","reason":"verify","detail":"bad sha"}"#).get()
        #expect(failed == .progress("j1", .failed(.verify, detail: "bad sha")))
    }

    @Test(arguments: [
        ("updraft/d/a/announce", "not json", "malformed_announce"),
        ("updraft/d/a/announce", #"{"product":"thermo"}"#, "malformed_announce"),
        ("updraft/d/a/announce", #"{"product":"the rmo","version":"1"}"#, "malformed_announce"),
        ("updraft/d/a/announce", #"{"product":"thermo","version":"1","boot":-1}"#, "malformed_announce"),
        ("updraft/d/a/announce", #"{"product":"thermo","version":"1","boot":"7"}"#, "malformed_announce"),
        ("updraft/d/a/progress", #"{"job":"j1","state":"downloading"}"#, "malformed_progress"),
        ("updraft/d/a/progress", #"{"job":"j1","state":"downloading","percent":300}"#, "malformed_progress"),
        ("updraft/d/a/progress", #"{"job":"j1","state":"exploded"}"#, "malformed_progress"),
        ("updraft/d/a/progress", #"{"job":"j1","state":"failed","reason":"timeout"}"#, "malformed_progress"),
        ("updraft/d/a/progress", #"{"job":"../etc","state":"verified"}"#, "malformed_progress"),
        ("updraft/d/a/download", #"{"job":"j1","offset":"0","count":1,"size":1024}"#, "malformed_download"),
        ("updraft/d/a/job", "{}", "wrong_direction"),
        ("updraft/d/a/chunk", "", "wrong_direction"),
        ("updraft/d/a/bogus", "{}", "unknown_topic"),
        ("updraft/d/a+b/announce", "{}", "unknown_topic"),
        ("other/d/a/announce", "{}", "unknown_topic"),
        ("updraft/d/a/announce/extra", "{}", "unknown_topic"),
    ])
    func malformedMessagesGetClearErrors(topic: String, payload: String, code: String) {
        #expect(errorCode(topic, payload) == code)
    }

    @Test func oversizedControlMessagesAreRefusedBeforeParsing() {
        let big = "{\"product\":\"" + String(repeating: "a", count: 600) + "\"}"
        #expect(errorCode("updraft/d/a/announce", big) == "payload_too_large")
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let count = Int.random(in: 0...600, using: &rng)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            for kind in ["announce", "presence", "download", "progress"] {
                if case .success(let (_, message)) = codec.decode(topic: "updraft/d/x/\(kind)", payload: bytes) {
                    // Random bytes that happen to decode must still be valid messages.
                    if case .presence = message { continue }
                    Issue.record("random bytes decoded as \(message)")
                }
            }
        }
    }

    @Test func chunkRangesRespectBoundsAndTheImageEnd() throws {
        let limits = ChunkLimits(min: 256, max: 65536, preferred: 4096, maxCount: 8)
        let ranges = try DownloadRequest(job: "j", offset: 8192, count: 8, size: 4096).chunkRanges(imageSize: 20000, limits: limits)
        #expect(ranges == [8192..<12288, 12288..<16384, 16384..<20000])
        func code(_ r: DownloadRequest) -> String? {
            do { _ = try r.chunkRanges(imageSize: 20000, limits: limits); return nil } catch { return error.code }
        }
        #expect(code(DownloadRequest(job: "j", offset: 20000, count: 1, size: 4096)) == "offset_out_of_range")
        #expect(code(DownloadRequest(job: "j", offset: -1, count: 1, size: 4096)) == "offset_out_of_range")
        #expect(code(DownloadRequest(job: "j", offset: 0, count: 1, size: 100)) == "chunk_size_out_of_bounds")
        #expect(code(DownloadRequest(job: "j", offset: 0, count: 1, size: 70000)) == "chunk_size_out_of_bounds")
        #expect(code(DownloadRequest(job: "j", offset: 0, count: 9, size: 4096)) == "chunk_count_out_of_bounds")
        #expect(code(DownloadRequest(job: "j", offset: 0, count: 0, size: 4096)) == "chunk_count_out_of_bounds")
    }

    @Test func offerCarriesAVerifiableManifest() throws {
        let key = ReleaseSigningKey()
        let manifest = Manifest(product: "thermo", version: "2.0", sequence: 3, size: 10, sha256: "ab", created: Date(), keyID: key.publicKey.keyID)
        let fw = Firmware(product: "thermo", version: "2.0", sequence: 3, size: 10, sha256: "ab", md5: "cd", createdAt: Date(), manifest: try key.sign(manifest))
        let job = Job(releaseID: "r1", deviceID: "a", firmwareID: fw.id, targetVersion: "2.0", createdAt: Date())
        let bytes = codec.encode(JobOffer(job: job, firmware: fw, limits: ChunkLimits()))
        let offer = try codec.decodeOffer(bytes)
        #expect(offer.job == job.id)
        let signed = try #require(offer.signedManifest)
        #expect(try key.publicKey.verify(signed) == manifest)
    }

    /// The signed HTTP download URL travels in offers and pending answers, and only when set.
    @Test func offersAndPendingAnswersCarryTheDownloadURL() throws {
        let key = ReleaseSigningKey()
        let manifest = Manifest(product: "thermo", version: "2.0", sequence: 3, size: 10, sha256: "ab", created: Date(), keyID: key.publicKey.keyID)
        let fw = Firmware(product: "thermo", version: "2.0", sequence: 3, size: 10, sha256: "ab", md5: "cd", createdAt: Date(), manifest: try key.sign(manifest))
        let job = Job(releaseID: "r1", deviceID: "a", firmwareID: fw.id, targetVersion: "2.0", createdAt: Date())
        let url = "http://127.0.0.1:8080/v1/fw/a/\(job.id)?exp=1&sig=x"
        #expect(try codec.decodeOffer(codec.encode(JobOffer(job: job, firmware: fw, url: url))).url == url)
        let plain = codec.encode(JobOffer(job: job, firmware: fw, limits: ChunkLimits()))
        #expect(try codec.decodeOffer(plain).url == nil)
        #expect(!String(decoding: plain, as: UTF8.self).contains("\"url\""))
        let pending = try JSONDecoder().decode(PendingBody.self, from: Data(codec.encode(PendingBody(job: job, url: url))))
        #expect(pending.url == url && pending.pending)
        #expect(PendingBody(job: nil, url: url).url == nil)
    }

    @Test func topicsParseAndBuild() {
        let topics = UpdraftDialectV1(prefix: "fleet/eu")
        #expect(topics.topic(.job, of: "d1") == "fleet/eu/d/d1/job")
        #expect(topics.chunkTopic(of: "d1", job: "j1", offset: 4096) == "fleet/eu/d/d1/chunk/j1/4096")
        let parsed = topics.parse("fleet/eu/d/d1/chunk/j1/4096")
        #expect(parsed == WireTopic(device: "d1", kind: .chunk, rest: ["j1", "4096"]))
        #expect(topics.parse("fleet/d/d1/job") == nil)
    }

    /// The byte-walking parser agrees with the plain definition: split on "/", the
    /// prefix levels, "d", a valid id, a known kind, then whatever levels remain.
    @Test(arguments: [
        "fleet/eu/d/d1/job", "fleet/eu/d/d1/job/", "fleet/eu/d/d1/chunk/j1/0", "fleet/eu/d/d1/chunk//",
        "fleet/eu/d/d1", "fleet/eu/d/d1/", "fleet/eu/d//job", "fleet/eu/d/d+1/job", "fleet/eu/d/d1/jobs",
        "fleet/eu/x/d1/job", "fleet/eud/d1/job", "fleet/eu/d/", "fleet/eu", "", "/", "fleet/eu/d/é/job",
        "fleet/eu/d/d1/progress/extra/levels", "fleet/eu/d/\(String(repeating: "x", count: 65))/job",
    ])
    func topicParseMatchesTheLevelDefinition(topic: String) {
        let topics = UpdraftDialectV1(prefix: "fleet/eu")
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        var expected: WireTopic?
        if levels.count >= 5, levels[0] == "fleet", levels[1] == "eu", levels[2] == "d",
            let id = DeviceID(rawValue: String(levels[3])), let kind = WireTopicKind(rawValue: String(levels[4]))
        {
            expected = WireTopic(device: id, kind: kind, rest: Array(levels[5...]))
        }
        let parsed = topics.parse(topic)
        #expect(parsed == expected)
    }
}
