import CoAP
import Foundation
import LoopbackPorts
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftDevice
import UpdraftTestSupport
import UpdraftWire

/// HTTP firmware downloads (`GET /v1/fw/<device>/<job>`) on a real gateway with its HTTP
/// server on a free port, through a real client: Range, conditional requests, the signed
/// URL and its hostile twins, and MQTT and CoAP reference devices updating over HTTP.
@Suite(.timeLimit(.minutes(4))) struct HTTPDownloadTests {
    /// A gateway serving HTTP on a free port, a client, and the URL key of its data directory.
    struct Site {
        let h: Harness
        let client: HTTPTestClient
        let signer: DownloadURLSigner

        /// A URL for `device`'s `job` of `firmware`, signed with the gateway's key (or the one given).
        func path(_ device: DeviceID, _ job: JobID, _ firmware: Firmware, expires: Int64? = nil, signer other: DownloadURLSigner? = nil) -> String {
            let expires = expires ?? Int64(Date().timeIntervalSince1970) + 600
            let sig = (other ?? signer).signature(device: device, job: job, sha256: firmware.sha256, expires: expires)
            return DownloadGrant(device: device, job: job, expires: expires, signature: sig).pathAndQuery
        }

        /// An image of `size` bytes, a job of device dl-1 for it, and that job's URL.
        func oneJob(size: Int) async throws -> (Firmware, [UInt8], String) {
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: size)
            let jobs = try await jobs(for: ["dl-1"], of: firmware)
            return (firmware, image, path("dl-1", try #require(jobs["dl-1"]), firmware))
        }

        /// Queued jobs for devices that are not online: the engine holds them, nothing downloads them.
        func jobs(for ids: [DeviceID], of firmware: Firmware) async throws -> [DeviceID: JobID] {
            let plan = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(ids), allowDowngrade: false)
            let jobs = Dictionary(uniqueKeysWithValues: plan.jobs.map { ($0.deviceID, $0.id) })
            let gateway = try #require(h.stack.gateway)
            try await eventually(timeout: .seconds(20), "the gateway adopted the jobs") {
                for (device, job) in jobs {
                    if await gateway.engine.activeJob(of: device)?.id != job { return false }
                }
                return true
            }
            return jobs
        }
    }

    static func withSite(_ body: (Site) async throws -> Void) async throws {
        let port = PortProbe.freePort()
        try await Harness.with(tune: { $0.http.port = port }) { h in
            let keyFile = h.stack.configuration.dataDirectory + "/download-url.key"
            let text = try String(contentsOfFile: keyFile, encoding: .utf8)
            let signer = try DownloadURLSigner(key: Array(try #require(Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)))))
            let client = HTTPTestClient(port: port)
            do {
                try await body(Site(h: h, client: client, signer: signer))
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        }
    }

    @Test func rangeDownloadsAreByteIdenticalAtRandomRanges() async throws {
        try await Self.withSite { site in
            let (firmware, image, path) = try await site.oneJob(size: 1_000_003)
            let etag = "\"\(firmware.sha256)\""

            let whole = try await site.client.get(path)
            #expect(whole.status == 200, "\(whole.text.prefix(300))")
            #expect(whole.body == image)
            #expect(whole.header("etag") == etag)
            #expect(whole.header("accept-ranges") == "bytes")
            #expect(whole.header("content-length") == "\(image.count)")

            var generator = SystemRandomNumberGenerator()
            for _ in 0..<40 {
                let a = Int.random(in: 0..<image.count, using: &generator)
                let b = Int.random(in: a..<min(image.count + 5000, a + 300_000), using: &generator)
                let (header, expected): (String, ClosedRange<Int>) = switch Int.random(in: 0..<3, using: &generator) {
                case 0: ("bytes=\(a)-\(b)", a...min(b, image.count - 1))
                case 1: ("bytes=\(a)-", a...(image.count - 1))
                default: ("bytes=-\(b - a + 1)", max(0, image.count - (b - a + 1))...(image.count - 1))
                }
                let part = try await site.client.get(path, headers: [("Range", header)])
                #expect(part.status == 206, "\(header)")
                #expect(part.header("content-range") == "bytes \(expected.lowerBound)-\(expected.upperBound)/\(image.count)", "\(header)")
                #expect(part.body == Array(image[expected]), "\(header)")
            }
            // HEAD: the headers alone.
            let head = try await site.client.head(path)
            #expect(head.status == 200 && head.body.isEmpty && head.header("content-length") == "\(image.count)")
            #expect(head.header("etag") == etag)
            // Key file: made once, this user's only.
            let mode = try FileManager.default.attributesOfItem(atPath: site.h.stack.configuration.dataDirectory + "/download-url.key")[.posixPermissions] as? Int
            #expect(mode == 0o600)
        }
    }

    @Test func unsatisfiableRangesNotModifiedAndIfRange() async throws {
        try await Self.withSite { site in
            let (firmware, image, path) = try await site.oneJob(size: 70_000)
            let etag = "\"\(firmware.sha256)\""
            for range in ["bytes=70000-", "bytes=99999999999999999999999-", "bytes=-0"] {
                let refused = try await site.client.get(path, headers: [("Range", range)])
                #expect(refused.status == 416, "\(range)")
                #expect(refused.header("content-range") == "bytes */70000", "\(range)")
                #expect(refused.json["code"] as? String == "range_not_satisfiable")
            }
            // Clamped to the end; several ranges and bad syntax get the whole image.
            #expect(try await site.client.get(path, headers: [("Range", "bytes=69990-80000")]).body == Array(image[69990...]))
            for ignored in ["bytes=0-1,5-6", "bytes=5-2", "items=0-5", "bytes=x-"] {
                let whole = try await site.client.get(path, headers: [("Range", ignored)])
                #expect(whole.status == 200 && whole.body == image, "\(ignored)")
            }
            // If-None-Match: the ETag (or a list holding it, or a weak form) → 304, no body.
            for tag in [etag, "\"other\", \(etag)", "W/\(etag)", "*"] {
                let cached = try await site.client.get(path, headers: [("If-None-Match", tag)])
                #expect(cached.status == 304 && cached.body.isEmpty, "\(tag)")
                #expect(cached.header("etag") == etag)
            }
            #expect(try await site.client.get(path, headers: [("If-None-Match", "\"abc\"")]).status == 200)
            // If-Range: the part only while the image is the one named; else all of it.
            let resumed = try await site.client.get(path, headers: [("Range", "bytes=1000-"), ("If-Range", etag)])
            #expect(resumed.status == 206 && resumed.body == Array(image[1000...]))
            for other in ["\"0000\"", "W/\(etag)", "Wed, 21 Oct 2015 07:28:00 GMT"] {
                let changed = try await site.client.get(path, headers: [("Range", "bytes=1000-"), ("If-Range", other)])
                #expect(changed.status == 200 && changed.body == image, "\(other)")
            }
        }
    }

    /// Each hostile URL is refused before a byte of the image goes out, and records no activity.
    @Test func expiredAlteredForeignAndEndedURLsAreRefused() async throws {
        try await Self.withSite { site in
            let (firmware, _) = try await site.h.addFirmware(version: "2.0", size: 20_000)
            let jobs = try await site.jobs(for: ["dl-1", "dl-2"], of: firmware)
            let (job1, job2) = (try #require(jobs["dl-1"]), try #require(jobs["dl-2"]))
            let now = Int64(Date().timeIntervalSince1970)
            let good = site.path("dl-1", job1, firmware, expires: now + 600)
            #expect(try await site.client.get(good).status == 200)

            func expect(_ path: String, _ status: Int, _ code: String, _ what: Comment) async throws {
                let answer = try await site.client.get(path)
                #expect(answer.status == status, what)
                #expect(answer.json["code"] as? String == code, "\(what): \(answer.text.prefix(200))")
                #expect(answer.header("content-type") == "application/problem+json", what)
            }
            try await expect(site.path("dl-1", job1, firmware, expires: now - 1), 403, "download_url_expired", "expired")
            // Altered: the signature, the expiry, the device, the job.
            var flipped = Array(good)
            let last = flipped.count - 1
            flipped[last] = flipped[last] == "A" ? "B" : "A"
            try await expect(String(flipped), 403, "download_url_invalid", "altered signature")
            let later = good.replacingOccurrences(of: "exp=\(now + 600)", with: "exp=\(now + 999_999)")
            try await expect(later, 403, "download_url_invalid", "extended expiry")
            try await expect(good.replacingOccurrences(of: "/dl-1/", with: "/dl-2/"), 403, "download_url_invalid", "another device's path")
            try await expect(good.replacingOccurrences(of: job1.rawValue, with: job2.rawValue), 403, "download_url_invalid", "another job")
            let other = try DownloadURLSigner(key: DownloadURLSigner.generateKey())
            try await expect(site.path("dl-1", job1, firmware, signer: other), 403, "download_url_invalid", "another key")
            try await expect("/v1/fw/dl-1/\(job1)", 403, "download_url_invalid", "no signature")
            try await expect("/v1/fw/dl-1/\(job1)?exp=\(now + 600)&sig=", 403, "download_url_invalid", "empty signature")
            // An operator's token authorises no download.
            let token = try await site.h.ops.createToken(name: "ops", scope: "admin").secret.value
            #expect(try await site.client.get("/v1/fw/dl-1/\(job1)", token: token).status == 403)
            // Path traversal: never a file outside the images, never a 2xx.
            for path in [
                "/v1/fw/../../etc/passwd", "/v1/fw/%2e%2e/%2e%2e/etc/passwd", "/v1/fw/dl-1/..%2f..%2f..%2fetc%2fpasswd",
                "/v1/fw/dl-1/..", "/v1/fw/../\(job1)?exp=\(now + 600)&sig=x", "/v1/fw/dl-1/\(job1)/../../../etc/passwd",
                "/v1/fw/dl-1%2f..%2f..%2fetc/passwd",
            ] {
                let answer = try await site.client.get(path)
                #expect([400, 403, 404].contains(answer.status), "\(path): \(answer.status)")
                #expect(!answer.text.contains("root:"), "\(path)")
            }
            // A canceled job: its genuine URL is gone.
            _ = try await site.h.ops.cancelJob(job1)
            let gateway = try #require(site.h.stack.gateway)
            try await eventually(timeout: .seconds(20), "the gateway saw the cancel") { await gateway.engine.activeJob(of: "dl-1") == nil }
            try await expect(good, 410, "job_finished", "canceled job")
            // The other device's genuine URL still works.
            #expect(try await site.client.get(site.path("dl-2", job2, firmware)).status == 200)
            let refused = gateway.downloadCounters.snapshot.filter { $0.key.hasPrefix("rejected.") }.values.reduce(0, +)
            #expect(refused >= 10)
        }
    }

    /// The CoAP pending answer and job offer carry a URL made when asked, that downloads the image;
    /// with `http.downloads` off there is none.
    @Test func coapAnswersCarryAWorkingURL() async throws {
        try await Self.withSite { site in
            let (firmware, image) = try await site.h.addFirmware(version: "2.0", size: 30_000)
            let jobs = try await site.jobs(for: ["dl-1"], of: firmware)
            let client = CoAPClient(logger: Harness.logger)
            defer { client.shutdown() }
            let session = try await client.session(host: "127.0.0.1", port: site.h.stack.configuration.coap.port)
            let answer = try await session.get("pending", query: ["d=dl-1"])
            let pending = try JSONDecoder().decode(PendingBody.self, from: Data(answer.payload))
            #expect(pending.job == jobs["dl-1"])
            let url = try #require(pending.url)
            let prefix = "http://127.0.0.1:\(site.client.port)"
            #expect(url.hasPrefix(prefix + "/v1/fw/dl-1/"))
            #expect(try await site.client.get(String(url.dropFirst(prefix.count))).body == image)
        }
        let port = PortProbe.freePort()
        try await Harness.with(tune: { ($0.http.port, $0.http.downloads) = (port, false) }) { h in
            let (firmware, _) = try await h.addFirmware(version: "2.0", size: 30_000)
            _ = try await h.ops.createRelease(firmwareID: firmware.id, target: .devices(["dl-1"]), allowDowngrade: false)
            let client = CoAPClient(logger: Harness.logger)
            defer { client.shutdown() }
            let session = try await client.session(host: "127.0.0.1", port: h.stack.configuration.coap.port)
            try await eventually(timeout: .seconds(20), "a pending job without url") {
                let answer = try await session.get("pending", query: ["d=dl-1"])
                let pending = try JSONDecoder().decode(PendingBody.self, from: Data(answer.payload))
                return pending.pending && pending.url == nil
            }
            #expect(!FileManager.default.fileExists(atPath: h.stack.configuration.dataDirectory + "/download-url.key"))
        }
    }

    /// An MQTT and a CoAP reference device take the whole release over HTTP (the MQTT one
    /// cut mid-transfer, resuming with Range); not a chunk nor a block is served.
    @Test func mqttAndCoAPDevicesCompleteAReleaseOverHTTP() async throws {
        try await Self.withSite { site in
            let h = site.h
            let (firmware, image) = try await h.addFirmware(version: "2.0", size: 600_000)
            let fleet = try await h.fleet(2) { config in
                config.protocol = .mixed
                config.coapPort = h.stack.configuration.coap.port
                config.downloadsOverHTTP = true
                config.disconnectFraction = 1
                config.disconnectAtPercent = 40
            }
            try await h.start(fleet, online: 2)
            let (_, jobs) = try await h.updateEveryDevice(of: fleet, count: 2, to: firmware, image: image)
            await fleet.stop()
            let gateway = try #require(h.stack.gateway)
            #expect(gateway.mqtt.counters.snapshot["bytes.sent", default: 0] == 0, "\(gateway.mqtt.counters.snapshot)")
            #expect(gateway.coap?.counters.snapshot["firmware", default: 0] == 0)
            #expect(gateway.downloadCounters.snapshot["bytes.sent", default: 0] >= 2 * image.count)
            let mqttDevice = try #require(fleet.devices.first { $0.transport == .mqtt })
            #expect(mqttDevice.state.resumes >= 1, "the MQTT device's transfer was cut and resumed")
            let events = try await h.ops.store.events(after: 0, limit: 100_000)
            h.expectEveryJobTookTheWholePath(jobs, events: events)
        }
    }
}
