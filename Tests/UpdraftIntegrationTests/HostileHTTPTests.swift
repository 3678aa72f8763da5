import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// Bad input against a real `updraft serve`: schemathesis (PyPI) generating requests from
/// the served openapi.yaml, and uploads past `firmware.max_image_bytes` measured from
/// outside the process.
@Suite(.timeLimit(.minutes(6))) struct HostileHTTPTests {
    /// Installed by the Makefile's `pyvenv` target beside aiocoap.
    static let schemathesis = Peers.packageRoot.appendingPathComponent(".build/pyvenv/bin/schemathesis").path
    /// Which checks run, what is excluded and why: Tests/UpdraftIntegrationTests/Peers/schemathesis.toml.
    static let configuration = Peers.packageRoot.appendingPathComponent("Tests/UpdraftIntegrationTests/Peers/schemathesis.toml").path
    static let hasSchemathesis = FileManager.default.isExecutableFile(atPath: schemathesis)

    /// Every operation of the served document (but the SSE stream, see the .toml) with a
    /// fixed seed and a bounded number of examples: no 5xx, every response in the
    /// document's statuses, content types and schemas, 405 + Allow for undeclared methods.
    @Test(.enabled(if: hasSchemathesis, "no schemathesis in .build/pyvenv: run `make pyvenv` (or `make test`, which does)"))
    func schemathesisFindsNoServerErrorAndNoSchemaBreak() async throws {
        try await ServedAPI.with("updraft-st") { api in
            try await Self.seed(api)
            let report = api.folder.path + "/schemathesis"
            let output = api.folder.path + "/schemathesis.log"
            var environment = ProcessInfo.processInfo.environment
            environment["UPDRAFT_TEST_TOKEN"] = api.adminToken
            environment["SCHEMATHESIS_HOOKS"] = nil
            let run = try ChildProcess(
                executable: Self.schemathesis,
                arguments: [
                    "--config-file", Self.configuration, "run", "http://127.0.0.1:\(api.port)/openapi.yaml",
                    "--seed", "20261126", "--max-examples", "12", "--report", "junit", "--report-dir", report, "--no-color",
                ],
                outputFile: output, environment: environment)
            let finished = await run.waitForExit(timeout: .seconds(240))
            if !finished { run.stop(grace: 1) }
            let log = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            #expect(finished, "schemathesis did not finish in 240 s: \(log.suffix(3000))")
            #expect(run.terminationStatus == 0, "schemathesis found failures:\n\(log.suffix(12000))")
            #expect(log.contains("No issues found") || log.contains(" passed"), "\(log.suffix(2000))")
            #expect(api.process.isRunning, "serve survived: \(api.serveLog.suffix(2000))")
        }
    }

    /// Data for the GETs to find: devices, a release, a webhook (thermo@2.0 is in the folder).
    static func seed(_ api: ServedAPI) async throws {
        let ops = api.folder.ops
        try await ops.store.commit(
            StoreBatch(devices: try (1...3).map { Device(id: try DeviceID(validating: "st-\($0)"), product: "thermo", version: "1.0", online: false) }))
        _ = try await ops.createRelease(firmwareID: api.folder.firmware.id, target: .devices(["st-1"]), allowDowngrade: false)
        _ = try await ops.addWebhook(url: "http://127.0.0.1:9/hook", secret: "seed-secret-0123456789", kinds: nil, after: nil)
    }

    /// 15 MiB against a 10 MiB limit, announced by Content-Length and sent chunked without
    /// one: 413 `firmware_too_large` each time, the serve process's peak resident memory
    /// (VmHWM, reset before each upload) never more than 6 MiB above where it was, and no
    /// partial file left in the uploads folder.
    @Test func aTooLargeUploadIsRefusedWithoutGrowingTheServersMemory() async throws {
        let limit = 10 << 20
        try await ServedAPI.with("updraft-big", environment: ["UPDRAFT_FIRMWARE_MAX_IMAGE_BYTES": "\(limit)"]) { api in
            let token = try await api.folder.ops.createToken(name: "uploader", scope: "operate").secret.value
            // Once unmeasured: the first upload's one-time allocations are not what is measured.
            _ = try await Self.upload(port: api.port, token: token, bytes: 15 << 20, chunked: false)
            for chunked in [false, true] {
                let before = try api.memory("VmRSS")
                try api.resetPeakMemory()
                let answer = try await Self.upload(port: api.port, token: token, bytes: 15 << 20, chunked: chunked)
                let peak = try api.memory("VmHWM")
                let growth = peak - before
                print("upload of 15 MiB (chunked: \(chunked)): \(answer.prefix(40))…, RSS before \(before >> 10) KiB, peak \(peak >> 10) KiB, +\(growth >> 10) KiB")
                #expect(answer.hasPrefix("HTTP/1.1 413"), "chunked \(chunked): \(answer.prefix(300))")
                #expect(answer.contains("firmware_too_large"))
                #expect(growth < 6 << 20, "chunked \(chunked): the peak grew by \(growth >> 10) KiB")
            }
            let uploads = api.folder.configuration.imagesDirectory + "/uploads"
            let left = (try? FileManager.default.contentsOfDirectory(atPath: uploads)) ?? []
            #expect(left.isEmpty, "partial files left: \(left)")
            #expect(try await api.folder.ops.store.firmwareList(product: nil).count == 1, "nothing added")
        }
    }

    /// Sends `bytes` of body in 64 KiB pieces (stopping when the server answers or stops
    /// reading), then returns what the server answered.
    static func upload(port: Int, token: String, bytes: Int, chunked: Bool) async throws -> String {
        let connection = try RawConnection(port: port)
        let framing = chunked ? "Transfer-Encoding: chunked" : "Content-Length: \(bytes)"
        connection.send(
            "POST /v1/firmware?product=thermo&version=9.\(bytes) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n"
                + "Content-Type: application/octet-stream\r\n\(framing)\r\n\r\n")
        let piece = [UInt8](repeating: 0xA5, count: 64 << 10)
        var answer: [UInt8] = []
        var sent = 0
        while sent < bytes {
            let framed = chunked ? Array(String(piece.count, radix: 16).utf8) + [13, 10] + piece + [13, 10] : piece
            guard connection.send(framed) else { break }
            sent += piece.count
            let read = await connection.read(timeout: .milliseconds(1))
            answer += read.bytes
            if read.closed || !answer.isEmpty { break }
        }
        if chunked, sent >= bytes { connection.send("0\r\n\r\n") }
        answer += await connection.read(timeout: .seconds(10)) { $0.last == UInt8(ascii: "}") }.bytes
        return String(decoding: answer, as: UTF8.self)
    }
}
