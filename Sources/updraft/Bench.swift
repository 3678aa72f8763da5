import ArgumentParser
import Foundation
import Logging
import UpdraftApp
import UpdraftTools

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput against a reference taken in the same run.",
        subcommands: [MQTT.self, CoAP.self, HTTP.self, SSE.self, Abuse.self, Handshake.self])

    struct MQTT: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mqtt",
            abstract: "Raw broker stream vs Updraft firmware delivery to N devices.",
            discussion: """
                Starts a managed mosquitto on a free loopback port (passwords and ACL on, as in \
                production), a gateway and N simulated devices in this process. Each round first \
                streams devices × image-bytes of chunk-size messages from one publisher to one \
                subscriber, each with its own account (the reference), then releases a new image of \
                image-bytes to the N devices, which download it in windows of chunk-size chunks; the \
                delivery time runs from the release to the last byte at the last device. Devices then \
                verify, install and reboot (not timed) before the next round. Prints every round with \
                its ratio, the medians, and the median of the rounds' ratios.
                """)

        @Option(help: "Simulated devices.") var devices = 100
        @Option(help: "Image size in bytes.") var imageBytes = 1 << 20
        @Option(help: "Chunk size in bytes.") var chunkSize = 4096
        @Option(help: "Chunks per device request.") var window = 16
        @Option(help: "Rounds of raw stream + delivery; the medians are compared.") var rounds = 5
        @Flag(help: "Let every client in without a password (authentication: none), to see what passwords cost.") var anonymous = false
        @Option(help: "Log level.") var logLevel: Logger.Level = .warning

        func validate() throws {
            guard devices > 0, imageBytes >= chunkSize, (256...65536).contains(chunkSize), window >= 1, (1...20).contains(rounds) else {
                throw ValidationError(
                    "Need devices > 0, 256 <= chunk-size <= 65536, image-bytes >= chunk-size, window >= 1, 1 <= rounds <= 20.")
            }
        }

        func run() async throws {
            let options = MQTTBench.Options(
                devices: devices, imageBytes: imageBytes, chunkSize: chunkSize, window: window, rounds: rounds, anonymous: anonymous)
            let result = try await Bench.measure(logLevel: logLevel, connections: devices) {
                try await MQTTBench(options: options, logger: Bench.logger).run(report: $0)
            }
            print("updraft bench mqtt: \(devices) devices × \(imageBytes) B, \(chunkSize) B chunks, window \(window), \(rounds) round(s), \(anonymous ? "anonymous" : "passwords")")
            print("| round | raw 1 pub → 1 sub, s | raw MiB/s | Updraft → \(devices) devices, s | Updraft MiB/s | ratio |")
            print("|---:|---:|---:|---:|---:|---:|")
            for (index, round) in result.rounds.enumerated() {
                print(String(
                    format: "| %d | %.3f | %.1f | %.3f | %.1f | %.2f |", index + 1, round.raw.seconds, round.raw.megabytesPerSecond,
                    round.deliverySeconds, round.deliveryMegabytesPerSecond, round.ratio))
            }
            print(String(
                format: "| median | | %.1f | | %.1f | %.2f |", result.rawMegabytesPerSecond, result.deliveryMegabytesPerSecond, result.ratio))
            print("\(devices * imageBytes) B per measure; resumes \(result.resumes), stalled windows \(result.stalls)")
            print("CPU seconds per measure (broker / this process: raw publisher+subscriber, or gateway+devices):")
            for (index, round) in result.rounds.enumerated() {
                print("  round \(index + 1): raw \(Bench.cpu(round.rawCPU)), delivery \(Bench.cpu(round.deliveryCPU))")
            }
            print(String(format: "ratio Updraft / raw (median of the rounds' ratios): %.2f", result.ratio))
        }
    }

    struct Abuse: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "abuse",
            abstract: "What one hostile device costs the gateway, the broker and another device.",
            discussion: """
                Starts a managed mosquitto on a free loopback port and a gateway in this process. A calm \
                simulated device updates to an image of image-bytes alone (timed), then again while a \
                hog device asks for --window-requests windows of --window-chunks x --chunk-size bytes \
                and never reads its chunks. Gateway (this process) and broker memory are sampled \
                from /proc/<pid>/status (VmRSS) every 20 ms meanwhile. Then a spammer sends \
                --flood-messages reports for an unknown job and announcements of new versions; the \
                events added and the growth of the store's files are counted. Exits non-zero when an \
                aim is missed: gateway RSS +64 MiB, broker RSS +128 MiB, calm device beside the \
                hog within 3x its time alone, at most 500 events and 1 MiB of store from the flood.
                """)

        @Option(help: "Window requests the hog sends.") var windowRequests = 10_000
        @Option(help: "Chunks per hog window.") var windowChunks = 64
        @Option(help: "Chunk size of the hog's windows, bytes.") var chunkSize = 65_536
        @Option(help: "The calm device's image size in bytes.") var imageBytes = 4 << 20
        @Option(help: "Messages the spammer sends.") var floodMessages = 100_000
        @Option(help: "Log level.") var logLevel: Logger.Level = .warning

        func validate() throws {
            guard windowRequests >= 1, (1...1024).contains(windowChunks), (256...262_144).contains(chunkSize), imageBytes >= 1, floodMessages >= 0 else {
                throw ValidationError("Need window-requests >= 1, 1 <= window-chunks <= 1024, 256 <= chunk-size <= 262144, image-bytes >= 1, flood-messages >= 0.")
            }
        }

        func run() async throws {
            let options = AbuseBench.Options(
                windowRequests: windowRequests, windowChunks: windowChunks, chunkSize: chunkSize, imageBytes: imageBytes,
                floodMessages: floodMessages)
            let r = try await Bench.measure(logLevel: logLevel, connections: 8) {
                try await AbuseBench(options: options, logger: Bench.logger).run(report: $0)
            }
            func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
            print("updraft bench abuse: hog \(windowRequests) windows of \(windowChunks) x \(chunkSize) B; calm device \(imageBytes) B; spammer \(floodMessages) messages")
            print("| figure | value |")
            print("|---|---:|")
            print("| gateway RSS before / peak / growth | \(mib(r.gatewayRSS.before)) / \(mib(r.gatewayRSS.peak)) / \(mib(r.gatewayRSS.peak - r.gatewayRSS.before)) |")
            print("| broker RSS before / peak / growth | \(mib(r.brokerRSS.before)) / \(mib(r.brokerRSS.peak)) / \(mib(r.brokerRSS.peak - r.brokerRSS.before)) |")
            print(String(format: "| calm device alone / beside the hog | %.2f s / %.2f s (%.2fx) |", r.calmAloneSeconds, r.calmBesideSeconds, r.calmBesideSeconds / r.calmAloneSeconds))
            print(String(format: "| hog requests reaching the gateway / time | %d / %.2f s |", r.hogHandled, r.hogSeconds))
            print("| windows refused too_many_windows / chunks sent | \(r.windowsRefused) / \(r.chunksSent) |")
            print(String(format: "| flood messages reaching the gateway / time | %d / %.2f s |", r.floodHandled, r.floodSeconds))
            print("| flood answered rate_limited | \(r.rateLimited) |")
            print("| events added by the flood | \(r.eventsAdded) |")
            print("| store growth by the flood | \(String(format: "%.1f KiB", Double(r.storeGrowth) / 1024)) |")
            if r.missed.isEmpty {
                print("all aims met")
            } else {
                for miss in r.missed { print("MISSED: \(miss)") }
                throw ExitCode(1)
            }
        }
    }

    /// What both benches do around their measure: logging, an open-file limit for
    /// `connections`, and a progress line fed by the measure.
    static func measure<T: Sendable>(
        logLevel: Logger.Level, connections: Int, _ body: (@escaping @Sendable (String, Double) -> Void) async throws -> T
    ) async throws -> T {
        LogSetup.bootstrapOnce(level: logLevel)
        try await userFacing { try OpenFileLimit.reserve(OpenFileLimit.forDevices(connections)) }
        let line = ProgressLine()
        let result = try await userFacing { try await body { phase, fraction in line.update(fraction, phase) } }
        line.finish()
        return result
    }

    /// Made after `measure` bootstrapped logging (a logger keeps the handler it was made with).
    static var logger: Logger { Logger(label: "updraft.bench") }

    static func cpu(_ pair: (broker: Double?, process: Double?)) -> String {
        func text(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "?" }
        return "\(text(pair.broker)) / \(text(pair.process))"
    }

    struct CoAP: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "coap",
            abstract: "libcoap's coap-server vs Updraft's Block2 download of the same image.",
            discussion: """
                Starts libcoap's coap-server-openssl on a free loopback port and PUTs the image to it, \
                then starts the gateway (CoAP on a free port) with a job for each client device. The \
                same client, coap-client-openssl, then downloads the image from each server: one \
                client and N clients at once, at each block size, each client --rounds times in a \
                row; every download is checked byte for byte. Each configuration is measured \
                --repeats times with the servers taking turns. Prints every measure, the medians \
                and the ratios Updraft / libcoap of the median throughputs.
                """)

        @Option(help: "Image size in bytes.") var imageBytes = 256 * 1024
        @Option(help: "Block sizes, comma separated (16, 32, ..., 1024).") var blockSizes = "64,1024"
        @Option(help: "Concurrent client counts, comma separated.") var clients = "1,50"
        @Option(help: "Downloads per client, one after the other.") var rounds = 4
        @Option(help: "Measures of each configuration per server; medians are compared.") var repeats = 3
        @Option(help: "Log level.") var logLevel: Logger.Level = .warning

        private var blocks: [Int] { blockSizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
        private var clientCounts: [Int] { clients.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

        func validate() throws {
            guard !blocks.isEmpty, blocks.allSatisfy({ (16...1024).contains($0) && $0 & ($0 - 1) == 0 }) else {
                throw ValidationError("--block-sizes takes sizes among 16, 32, 64, 128, 256, 512, 1024.")
            }
            guard !clientCounts.isEmpty, clientCounts.allSatisfy({ (1...500).contains($0) }) else {
                throw ValidationError("--clients takes counts between 1 and 500.")
            }
            guard imageBytes > 0, rounds >= 1, (1...20).contains(repeats) else {
                throw ValidationError("Need image-bytes > 0, rounds >= 1 and 1 <= repeats <= 20.")
            }
        }

        func run() async throws {
            let options = CoAPBench.Options(
                imageBytes: imageBytes, blockSizes: blocks, clientCounts: clientCounts, rounds: rounds, repeats: repeats)
            let result = try await Bench.measure(logLevel: logLevel, connections: clientCounts.max() ?? 1) {
                try await CoAPBench(options: options, logger: Bench.logger).run(report: $0)
            }
            print("updraft bench coap: \(imageBytes) B image, \(rounds) download(s) per client, \(repeats) measure(s) each, coap-client-openssl as the client")
            print("| server | block | clients | MiB/s per measure | median MiB/s | failed downloads |")
            print("|---|---:|---:|---|---:|---:|")
            for block in blocks {
                for count in clientCounts {
                    for side in CoAPBench.Side.allCases {
                        let runs = result.measurements(side, block: block, clients: count)
                        let server = side == .libcoap ? "libcoap coap-server-openssl" : "Updraft gateway"
                        let each = runs.map { String(format: "%.2f", $0.megabytesPerSecond) }.joined(separator: ", ")
                        let medianText = result.medianMegabytesPerSecond(side, block: block, clients: count).map { String(format: "%.2f", $0) } ?? "?"
                        print("| \(server) | \(block) | \(count) | \(each) | \(medianText) | \(runs.reduce(0) { $0 + $1.failures }) |")
                    }
                }
            }
            for m in result.measurements {
                if let failure = m.firstFailure {
                    print("\(m.side.rawValue), \(m.blockSize) B blocks, \(m.clients) client(s): \(m.failures) failed, first: \(failure)")
                }
            }
            for block in blocks {
                for count in clientCounts {
                    if let ratio = result.ratio(block: block, clients: count) {
                        print(String(format: "ratio Updraft / libcoap, %d B blocks, %d client(s): %.2f", block, count, ratio))
                    }
                }
            }
        }
    }
}

extension Bench {
    struct Handshake: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "handshake",
            abstract: "DTLS handshakes of a real device during a ClientHello and garbage flood.",
            discussion: """
                Starts the gateway's CoAP server (DTLS-PSK and plain CoAP on free loopback ports) in \
                this process and floods it from a thread: DTLS 1.2 ClientHellos to the DTLS port and \
                garbage to the plain port, from a new source port every --per-port datagrams. \
                Meanwhile coap-client-openssl makes one PSK request after the other. Prints each \
                request's seconds (the first before the flood), the worst during the flood against \
                the 5 s aim, and the log lines and bytes the server wrote. Exits non-zero when a \
                request failed or took 5 s or more.
                """)

        @Option(help: "ClientHellos to send.") var hellos = 100_000
        @Option(help: "Garbage datagrams to send to the plain CoAP port.") var garbage = 0
        @Option(help: "Datagrams per second, both kinds together.") var rate = 10_000
        @Option(help: "Datagrams from one source port before the next.") var perPort = 4
        @Option(help: "coap.max_handshakes of the server.") var maxHandshakes = 100
        @Option(help: "coap.handshake_timeout of the server, seconds.") var handshakeTimeout = 10
        @Option(help: "Log level of this command (the server's log is counted, not shown).") var logLevel: Logger.Level = .warning

        func validate() throws {
            guard hellos >= 0, garbage >= 0, hellos + garbage > 0, rate > 0, perPort > 0, maxHandshakes > 0, handshakeTimeout > 0 else {
                throw ValidationError("Need hellos + garbage > 0 and positive rate, per-port, max-handshakes and handshake-timeout.")
            }
        }

        func run() async throws {
            let options = HandshakeFlood.Options(
                hellos: hellos, garbage: garbage, rate: rate, perPort: perPort, maxHandshakes: maxHandshakes,
                handshakeTimeout: .seconds(handshakeTimeout))
            let result = try await Bench.measure(logLevel: logLevel, connections: 16) {
                try await HandshakeFlood(options: options, logger: Bench.logger).run(report: $0)
            }
            print("updraft bench handshake: \(result.hellosSent) ClientHellos + \(result.garbageSent) garbage datagrams in \(String(format: "%.1f", result.floodSeconds)) s, new source port every \(perPort)")
            let before = result.handshakes.first.flatMap { $0 }.map { String(format: "%.3f s", $0) } ?? "failed"
            let during = Array(result.handshakes.dropFirst())
            let times = during.compactMap { $0 }.sorted()
            let median = times.isEmpty ? "-" : String(format: "%.3f s", times[times.count / 2])
            print("PSK handshake + request: \(before) before the flood; during it \(during.count) one after the other, median \(median), \(during.count - times.count) failed")
            let worst = during.contains(nil) ? nil : times.last
            print("worst during the flood: \(worst.map { String(format: "%.3f s", $0) } ?? "a request failed") (aim < 5 s)")
            print("server log: \(result.logLines) lines, \(result.logBytes) bytes")
            guard let worst, worst < 5 else { throw ExitCode(1) }
        }
    }
}
