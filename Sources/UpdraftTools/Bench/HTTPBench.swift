import Foundation
import Logging
import LoopbackPorts
import UpdraftApp
import UpdraftCore

/// `updraft bench http`: in one run, Debian's nginx serving an image file from a
/// temporary configuration on 127.0.0.1 against the gateway's authorised Range download
/// (`GET /v1/fw/...` by each device's signed URL) of the same bytes, with the same client
/// on both sides: curl processes asking `Range: bytes=0-` (206 from both), one and many
/// at once. Each side is checked byte for byte once; every measured response must be a
/// 206 of the whole image.
public struct HTTPBench: Sendable {
    public struct Options: Sendable {
        public var imageBytes = 64 << 20
        public var clientCounts = [1, 50]
        /// Downloads each client makes one after the other.
        public var rounds = 2
        /// Measures of each configuration per server, taking turns; medians are compared.
        public var repeats = 3
        public var nginxPath = "/usr/sbin/nginx"
        public var curlPath = "/usr/bin/curl"
        /// The gateway's `http.sendfile`: false measures image bodies read into buffers (as over HTTPS).
        public var sendfile = true

        public init(imageBytes: Int = 64 << 20, clientCounts: [Int] = [1, 50], rounds: Int = 2, repeats: Int = 3) {
            (self.imageBytes, self.clientCounts, self.rounds, self.repeats) = (imageBytes, clientCounts, rounds, repeats)
        }
    }

    public enum Side: String, Sendable, CaseIterable {
        case nginx
        case updraft
    }

    public struct Measurement: Sendable {
        public var side: Side
        public var clients: Int
        public var bytes: Int
        public var seconds: Double
        public var failures: Int
        public var firstFailure: String?
        public var megabytesPerSecond: Double { Double(bytes) / 1_000_000 / seconds }
    }

    public struct Result: Sendable {
        public var measurements: [Measurement]

        /// Each server's median MB/s with `clients` clients.
        public func medians(clients: Int) -> [Side: Double] {
            Dictionary(grouping: measurements.filter { $0.clients == clients }, by: \.side).mapValues { median($0.map(\.megabytesPerSecond)) }
        }

        /// Updraft's median throughput over nginx's.
        public func ratio(clients: Int) -> Double? {
            let medians = medians(clients: clients)
            return medians[.updraft].flatMap { updraft in medians[.nginx].map { updraft / $0 } }
        }

        /// The Markdown table (README "Benchmarks"), then failures and ratios.
        public func report(clientCounts: [Int], sendfile: Bool = true) -> [String] {
            var lines = ["| server | clients | MB/s per measure | median MB/s | failed downloads |", "|---|---:|---|---:|---:|"]
            for count in clientCounts {
                let medians = medians(clients: count)
                for side in Side.allCases {
                    let runs = measurements.filter { $0.side == side && $0.clients == count }
                    let each = runs.map { String(format: "%.0f", $0.megabytesPerSecond) }.joined(separator: ", ")
                    let name = side == .nginx ? "nginx (sendfile)" : "Updraft /v1/fw (signed URL, \(sendfile ? "sendfile" : "buffers"))"
                    lines.append("| \(name) | \(count) | \(each) | \(medians[side].map { String(format: "%.0f", $0) } ?? "?") | \(runs.reduce(0) { $0 + $1.failures }) |")
                }
            }
            for m in measurements {
                if let failure = m.firstFailure { lines.append("\(m.side.rawValue), \(m.clients) client(s): \(m.failures) failed, first: \(failure)") }
            }
            for count in clientCounts {
                if let ratio = ratio(clients: count) { lines.append(String(format: "ratio Updraft / nginx, %d client(s): %.2f", count, ratio)) }
            }
            return lines
        }
    }

    public let options: Options
    public let logger: Logger

    public init(options: Options, logger: Logger) { (self.options, self.logger) = (options, logger) }

    public func run(report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        let missing = [options.nginxPath, options.curlPath].filter { !FileManager.default.isExecutableFile(atPath: $0) }
        guard missing.isEmpty else {
            throw UpdraftError("bench_tool_missing", "\(missing.joined(separator: " and ")) missing: install Debian's nginx and curl (`make bench` does).")
        }
        let port = PortProbe.freePort()
        return try await LocalStack.with(logger: logger, tune: { ($0.http.port, $0.http.sendfile) = (port, options.sendfile) }) { stack in
            try await run(on: stack, httpPort: port, report: report)
        }
    }

    private func run(on stack: LocalStack, httpPort: Int, report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        let work = stack.directory + "/http-bench"
        try FileManager.default.createDirectory(atPath: work + "/www", withIntermediateDirectories: true)
        let imageFile = work + "/www/image.bin"
        let image = try DeterministicImage.write(options.imageBytes, seed: 11, to: imageFile, what: "bench")

        report("nginx", 0)
        let nginxPort = PortProbe.freePort()
        let nginx = try startNginx(work: work, port: nginxPort)
        defer { nginx.stop() }

        report("Updraft gateway", 0)
        let gateway = try await stack.startGateway()
        let firmware = try await stack.operations.addFirmware(file: imageFile, product: "bench", version: "2.0").firmware
        let devices = try (0..<(options.clientCounts.max() ?? 1)).map { try DeviceID(validating: "bench-\($0)") }
        _ = try await stack.operations.createRelease(firmwareID: firmware.id, target: .devices(devices), allowDowngrade: false)
        var updraftURLs: [String] = []
        for device in devices { updraftURLs.append(try await Self.url(of: device, from: gateway)) }
        let urls: [Side: [String]] = [.nginx: ["http://127.0.0.1:\(nginxPort)/image.bin"], .updraft: updraftURLs]
        for side in Side.allCases { try await check(urls[side]![0], image: image, work: work, side: side) }
        return Result(measurements: try await measure(urls: urls, size: image.count, work: work, report: report))
    }

    /// nginx in the foreground with a configuration of its own: sendfile, no access log.
    private func startNginx(work: String, port: Int) throws -> ChildProcess {
        let root = work + "/nginx"
        try FileManager.default.createDirectory(atPath: root + "/logs", withIntermediateDirectories: true)
        let user = getuid() == 0 ? "user root;\n" : ""
        let conf = """
            \(user)daemon off;
            worker_processes auto;
            pid \(root)/nginx.pid;
            error_log \(root)/logs/error.log warn;
            events { worker_connections 1024; }
            http {
                access_log off;
                sendfile on;
                tcp_nopush on;
                keepalive_timeout 10;
                client_body_temp_path \(root)/body; proxy_temp_path \(root)/proxy; fastcgi_temp_path \(root)/fastcgi;
                uwsgi_temp_path \(root)/uwsgi; scgi_temp_path \(root)/scgi;
                types { application/octet-stream bin; }
                server { listen 127.0.0.1:\(port); root \(work)/www; }
            }
            """
        try conf.write(toFile: root + "/nginx.conf", atomically: true, encoding: .utf8)
        return try ChildProcess(
            executable: options.nginxPath, arguments: ["-p", root + "/", "-e", root + "/logs/error.log", "-c", root + "/nginx.conf"],
            outputFile: root + "/logs/stdout.log")
    }

    /// The signed URL the device's offer would carry, once the gateway holds its job.
    private static func url(of device: DeviceID, from gateway: GatewayService) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            if let url = await gateway.downloadURL(for: device) { return url }
            guard ContinuousClock.now < deadline else { throw UpdraftError("bench_setup", "\(device) got no job within 30 s.") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// One whole download with the client, compared byte for byte (nginx: until it listens).
    private func check(_ url: String, image: [UInt8], work: String, side: Side) async throws {
        let out = work + "/check-\(side.rawValue).bin"
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            try? FileManager.default.removeItem(atPath: out)
            _ = try await curl(["-r", "0-", "-o", out, url], work: work)
            if FileManager.default.contents(atPath: out).map({ [UInt8]($0) }) == image { break }
            guard ContinuousClock.now < deadline else {
                throw UpdraftError("bench_setup", "\(side.rawValue) did not serve the image within 10 s; see \(work).")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        try? FileManager.default.removeItem(atPath: out)
    }

    private func measure(
        urls: [Side: [String]], size: Int, work: String, report: @escaping @Sendable (String, Double) -> Void
    ) async throws -> [Measurement] {
        let total = Double(options.clientCounts.count * 2 * options.repeats)
        var measurements: [Measurement] = []
        for clients in options.clientCounts {
            for index in 0..<options.repeats {
                for side in index % 2 == 0 ? Side.allCases : Side.allCases.reversed() {
                    report("\(side.rawValue), \(clients) client(s)", Double(measurements.count) / total)
                    let list = urls[side]!
                    let (seconds, failures) = try await download(clients: clients, url: { list[$0 % list.count] }, size: size, work: work)
                    measurements.append(
                        Measurement(
                            side: side, clients: clients, bytes: (clients * options.rounds - failures.count) * size, seconds: seconds,
                            failures: failures.count, firstFailure: failures.first))
                }
            }
        }
        return measurements
    }

    /// `clients` curl processes at once, each downloading `rounds` times over one
    /// connection to /dev/null; a download that is not a 206 of the whole image fails.
    private func download(
        clients: Int, url: @escaping @Sendable (Int) -> String, size: Int, work: String
    ) async throws -> (seconds: Double, failures: [String]) {
        let rounds = options.rounds
        let start = ContinuousClock.now
        let failures = try await withThrowingTaskGroup(of: [String].self) { group in
            for index in 0..<clients {
                group.addTask {
                    var arguments: [String] = ["-w", "%{http_code} %{size_download}\\n"]
                    for _ in 0..<rounds { arguments += ["-r", "0-", "-o", "/dev/null", url(index)] }
                    let printed = try await curl(arguments, work: work)
                    let lines = printed.split(separator: "\n").filter { !$0.isEmpty }
                    let good = lines.filter { $0 == "206 \(size)" }.count
                    return good == rounds ? [] : Array(repeating: "client \(index): \(printed.prefix(200))", count: rounds - good)
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        return ((ContinuousClock.now - start).seconds, failures)
    }

    private func curl(_ arguments: [String], work: String) async throws -> String {
        let log = work + "/curl-\(UUID().uuidString.prefix(8)).log"
        let child = try ChildProcess(executable: options.curlPath, arguments: ["-s", "--max-time", "300"] + arguments, outputFile: log)
        guard await child.waitForExit(timeout: .seconds(320)) else {
            child.stop()
            throw UpdraftError("bench_timeout", "curl did not finish in 320 s.")
        }
        defer { try? FileManager.default.removeItem(atPath: log) }
        return (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    }
}
