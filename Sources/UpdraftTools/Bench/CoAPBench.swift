import CoAP
import Foundation
import Logging
import LoopbackPorts
import UpdraftApp
import UpdraftCore
import UpdraftWire

/// `updraft bench coap`: in one run, libcoap's own `coap-server-openssl` serving an image
/// (uploaded to it by PUT) against the gateway's Block2 download of the same bytes, with
/// the same client on both sides: `coap-client-openssl` processes, one and many at once,
/// at each block size. Every download is checked byte for byte.
public struct CoAPBench: Sendable {
    public struct Options: Sendable {
        public var imageBytes = 256 * 1024
        public var blockSizes = [64, 1024]
        public var clientCounts = [1, 50]
        /// Downloads each client makes one after the other (evens out process start-up).
        public var rounds = 4
        /// Measures of each configuration, the two servers taking turns; medians are compared.
        public var repeats = 3
        public var serverPath = "/usr/bin/coap-server-openssl"
        public var clientPath = "/usr/bin/coap-client-openssl"

        public init(
            imageBytes: Int = 256 * 1024, blockSizes: [Int] = [64, 1024], clientCounts: [Int] = [1, 50], rounds: Int = 4,
            repeats: Int = 3
        ) {
            (self.imageBytes, self.blockSizes, self.clientCounts) = (imageBytes, blockSizes, clientCounts)
            (self.rounds, self.repeats) = (rounds, repeats)
        }
    }

    public enum Side: String, Sendable, CaseIterable {
        case libcoap
        case updraft
    }

    public struct Measurement: Sendable {
        public var side: Side
        public var blockSize: Int
        public var clients: Int
        /// Which of the ``Options/repeats`` measures of this configuration.
        public var repeatIndex: Int
        /// Bytes of the downloads that returned the whole image.
        public var bytes: Int
        public var seconds: Double
        /// Downloads that did not return the image (timed out, cut short); not in `bytes`.
        public var failures: Int
        /// What the first failed client printed.
        public var firstFailure: String?
        public var megabytesPerSecond: Double { Double(bytes) / 1_048_576 / seconds }
    }

    public struct Result: Sendable {
        public var measurements: [Measurement]

        public func measurements(_ side: Side, block: Int, clients: Int) -> [Measurement] {
            measurements.filter { $0.side == side && $0.blockSize == block && $0.clients == clients }
        }

        /// The median throughput of one server in one configuration.
        public func medianMegabytesPerSecond(_ side: Side, block: Int, clients: Int) -> Double? {
            let values = measurements(side, block: block, clients: clients).map(\.megabytesPerSecond)
            return values.isEmpty ? nil : median(values)
        }

        /// Updraft's median throughput over libcoap's, for one block size and client count.
        public func ratio(block: Int, clients: Int) -> Double? {
            guard let u = medianMegabytesPerSecond(.updraft, block: block, clients: clients),
                let l = medianMegabytesPerSecond(.libcoap, block: block, clients: clients)
            else { return nil }
            return u / l
        }
    }

    public let options: Options
    public let logger: Logger

    public init(options: Options, logger: Logger) { (self.options, self.logger) = (options, logger) }

    public func run(report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        for tool in [options.serverPath, options.clientPath] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw UpdraftError("bench_tool_missing", "\(tool) is missing: install Debian's libcoap3-bin (`make deps`).")
        }
        return try await LocalStack.with(logger: logger) { stack in try await run(on: stack, report: report) }
    }

    private func run(on stack: LocalStack, report: @escaping @Sendable (String, Double) -> Void) async throws -> Result {
        let work = stack.directory + "/coap-bench"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let imageFile = work + "/image.bin"
        let image = try DeterministicImage.write(options.imageBytes, seed: 7, to: imageFile, what: "bench")

        // libcoap's reference server, holding the image as a dynamic resource.
        report("libcoap server", 0)
        let libcoapPort = PortProbe.freeUDPPort()
        let server = try ChildProcess(
            executable: options.serverPath, arguments: ["-A", "127.0.0.1", "-p", "\(libcoapPort)", "-d", "10", "-v", "0"],
            outputFile: work + "/coap-server.log")
        defer { server.stop() }
        let libcoapURI = "coap://127.0.0.1:\(libcoapPort)/bench-image"
        try await upload(imageFile, to: libcoapURI, work: work, image: image)

        // The gateway, with a job for each client device.
        report("Updraft gateway", 0)
        try await stack.startGateway()
        let firmware = try await stack.operations.addFirmware(file: imageFile, product: "bench", version: "2.0").firmware
        let devices = (0..<(options.clientCounts.max() ?? 1)).map { "bench-\($0)" }
        let downloadPath = try await prepareJobs(stack, firmware: firmware, devices: devices)
        let gatewayPort = stack.configuration.coap.port
        let uris: [Side: @Sendable (Int) -> String] = [
            .libcoap: { _ in libcoapURI },
            .updraft: { "coap://127.0.0.1:\(gatewayPort)/\(downloadPath)?d=\(devices[$0])" },
        ]
        return Result(measurements: try await measure(uris: uris, image: image, work: work, report: report))
    }

    /// Every configuration, `repeats` times, the servers taking turns so that a slow spell
    /// of the machine hits both.
    private func measure(
        uris: [Side: @Sendable (Int) -> String], image: [UInt8], work: String,
        report: @escaping @Sendable (String, Double) -> Void
    ) async throws -> [Measurement] {
        let total = Double(options.blockSizes.count * options.clientCounts.count * 2 * options.repeats)
        var measurements: [Measurement] = []
        for block in options.blockSizes {
            for clients in options.clientCounts {
                for repeatIndex in 0..<options.repeats {
                    let order = repeatIndex % 2 == 0 ? Side.allCases : Side.allCases.reversed()
                    for side in order {
                        report("\(side.rawValue) \(clients) client(s), \(block) B blocks", Double(measurements.count) / total)
                        let (seconds, failures) = try await download(
                            clients: clients, block: block, uri: uris[side]!, image: image, work: work + "/\(side.rawValue)")
                        measurements.append(
                            Measurement(
                                side: side, blockSize: block, clients: clients, repeatIndex: repeatIndex,
                                bytes: (clients * options.rounds - failures.count) * image.count, seconds: seconds,
                                failures: failures.count, firstFailure: failures.first))
                    }
                }
            }
        }
        return measurements
    }

    /// PUTs the image to libcoap's server (`-d` creates the resource) and reads it back.
    private func upload(_ file: String, to uri: String, work: String, image: [UInt8]) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            _ = try await runClient(["-m", "put", "-b", "1024", "-f", file, uri], work: work, tag: "put")
            let check = work + "/check.bin"
            try? FileManager.default.removeItem(atPath: check)
            _ = try await runClient(["-b", "1024", "-o", check, uri], work: work, tag: "check")
            if FileManager.default.contents(atPath: check).map({ [UInt8]($0) }) == image { return }
            guard ContinuousClock.now < deadline else {
                throw UpdraftError(
                    "bench_setup", "coap-server-openssl did not take the image by PUT within 10 s; see \(work)/coap-server.log.")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Announces every device, releases the image to them, and waits until each job
    /// resource holds the offer. Returns the image's download path.
    private func prepareJobs(_ stack: LocalStack, firmware: Firmware, devices: [String]) async throws -> String {
        let client = CoAPClient(logger: logger)
        defer { client.shutdown() }
        let session = try await client.session(host: "127.0.0.1", port: stack.configuration.coap.port)
        let announce = Array(#"{"product":"bench","version":"1.0"}"#.utf8)
        for device in devices {
            let answer = try await session.post("announce", payload: announce, contentFormat: .json, query: ["d=\(device)"])
            guard answer.code.isSuccess else {
                throw UpdraftError("bench_setup", "The gateway refused the announce of \(device): \(answer.code).")
            }
        }
        let ids = try devices.map { try DeviceID(validating: $0) }
        try await stack.waitForRegistry(devices.count, "bench devices", timeout: .seconds(30)) { $0.product == "bench" }
        let deadline = ContinuousClock.now + .seconds(30)
        _ = try await stack.operations.createRelease(firmwareID: firmware.id, target: .devices(ids), allowDowngrade: false)
        var path: String?
        for device in devices {
            while true {
                let job = try await session.get("job/\(device)", query: ["d=\(device)"])
                if let offer = try? JSONDecoder().decode(JobOffer.self, from: Data(job.payload)), let download = offer.download {
                    path = download
                    break
                }
                guard ContinuousClock.now < deadline else {
                    throw UpdraftError("bench_setup", "\(device) got no job offer within 30 s.")
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        guard let path else { throw UpdraftError("bench_setup", "No device to download with.") }
        return path
    }

    /// `clients` coap-client processes at once, each downloading `rounds` times in a row;
    /// returns the wall time and what the clients that did not get the image printed.
    private func download(
        clients: Int, block: Int, uri: @escaping @Sendable (Int) -> String, image: [UInt8], work: String
    ) async throws -> (seconds: Double, failures: [String]) {
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let rounds = options.rounds
        let start = ContinuousClock.now
        let failures = try await withThrowingTaskGroup(of: [String].self) { group in
            for index in 0..<clients {
                group.addTask {
                    var failures: [String] = []
                    for round in 0..<rounds {
                        let out = work + "/c\(index)-r\(round)-b\(block).bin"
                        try? FileManager.default.removeItem(atPath: out)
                        let log = try await runClient(["-b", "\(block)", "-o", out, uri(index)], work: work, tag: "c\(index)")
                        let body = FileManager.default.contents(atPath: out).map { [UInt8]($0) } ?? []
                        if body != image {
                            failures.append("client \(index): \(body.count) of \(image.count) bytes; \(log.prefix(200))")
                        }
                    }
                    return failures
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        return ((ContinuousClock.now - start).seconds, failures)
    }

    /// Runs coap-client-openssl to its end and returns what it printed.
    private func runClient(_ arguments: [String], work: String, tag: String) async throws -> String {
        let logFile = work + "/\(tag)-\(UUID().uuidString.prefix(8)).log"
        let child = try ChildProcess(executable: options.clientPath, arguments: ["-B", "60"] + arguments, outputFile: logFile)
        guard await child.waitForExit(timeout: .seconds(180)) else {
            child.stop()
            throw UpdraftError("bench_timeout", "coap-client \(arguments.joined(separator: " ")) did not finish in 180 s.")
        }
        defer { try? FileManager.default.removeItem(atPath: logFile) }
        return (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
    }
}
