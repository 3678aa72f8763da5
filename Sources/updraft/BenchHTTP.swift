import ArgumentParser
import Foundation
import Logging
import UpdraftTools

extension Bench {
    struct HTTP: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "http",
            abstract: "nginx vs Updraft's authorised Range download of the same image.",
            discussion: """
                Starts Debian's nginx from a temporary configuration on a free 127.0.0.1 port \
                (sendfile on, no access log, worker_processes auto) serving the image file, and the \
                gateway with HTTP downloads on a free port and a job for each client device. The same \
                client, curl, then downloads the image from each server with `Range: bytes=0-` (206 \
                from both; Updraft by each device's signed URL): one client and N clients at once, \
                each --rounds times over one connection. Each side is checked byte for byte once; \
                every measured answer must be a 206 of the whole image. Measures alternate between \
                the servers; prints every measure, the medians (MB/s = 10^6 bytes per second) and \
                the ratios Updraft / nginx.
                """)

        @Option(help: "Image size in bytes.") var imageBytes = 64 << 20
        @Option(help: "Concurrent client counts, comma separated.") var clients = "1,50"
        @Option(help: "Downloads per client, one after the other.") var rounds = 2
        @Option(help: "Measures of each configuration per server; medians are compared.") var repeats = 3
        @Flag(inversion: .prefixedNo, help: "The gateway's http.sendfile; --no-sendfile reads image bodies into buffers (as over HTTPS).")
        var sendfile = true
        @Option(help: "Log level.") var logLevel: Logger.Level = .warning

        private var clientCounts: [Int] { clients.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

        func validate() throws {
            guard !clientCounts.isEmpty, clientCounts.allSatisfy({ (1...500).contains($0) }) else {
                throw ValidationError("--clients takes counts between 1 and 500.")
            }
            guard (1...(64 << 20)).contains(imageBytes), rounds >= 1, (1...20).contains(repeats) else {
                throw ValidationError("Need 1 <= image-bytes <= 64 MiB (firmware.max_image_bytes), rounds >= 1 and 1 <= repeats <= 20.")
            }
        }

        func run() async throws {
            var options = HTTPBench.Options(imageBytes: imageBytes, clientCounts: clientCounts, rounds: rounds, repeats: repeats)
            options.sendfile = sendfile
            let bench = HTTPBench(options: options, logger: Bench.logger)
            let result = try await Bench.measure(logLevel: logLevel, connections: clientCounts.max() ?? 1) { try await bench.run(report: $0) }
            print("updraft bench http: \(imageBytes) B image, \(rounds) download(s) per client, \(repeats) measure(s) each, curl as the client, \(sendfile ? "sendfile" : "no sendfile")")
            result.report(clientCounts: clientCounts, sendfile: sendfile).forEach { print($0) }
        }
    }
}
