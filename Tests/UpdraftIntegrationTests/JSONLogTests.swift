import Foundation
import Logging
import Synchronization
import Testing
@testable import UpdraftApp

/// `log_format: json`: every line one JSON object that parses, whatever bytes a message or
/// metadata value carries (control characters, quotes, a forged field, bytes that are
/// not UTF-8), with the fixed fields first; and the real binary logs so.
@Suite(.serialized, .timeLimit(.minutes(2))) struct JSONLogTests {
    final class Lines: Sendable {
        let lines = Mutex<[[UInt8]]>([])
        func add(_ line: [UInt8]) { lines.withLock { $0.append(line) } }
        var objects: [[String: Any]] {
            lines.withLock { $0 }.compactMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] }
        }
    }

    static func logger(_ lines: Lines, time: timespec = timespec(tv_sec: 1_795_710_675, tv_nsec: 7_000_000)) -> Logger {
        Logger(label: "updraft.test") { label in
            var handler = JSONLogHandler(label: label, metadataProvider: nil, output: { lines.add($0) }, clock: { time })
            handler.logLevel = .trace
            return handler
        }
    }

    @Test func hostileBytesStayInsideTheirString() throws {
        let lines = Lines()
        var logger = Self.logger(lines)
        logger[metadataKey: "gateway"] = "g1"
        let notUTF8 = String(decoding: [0x64, 0xFF, 0xFE, 0xC3, 0x28, 0x00, 0x0A], as: UTF8.self)
        let forged = "x\",\"level\":\"critical\",\"message\":\"forged\n{\"time\":\"0\"}"
        let control = (0..<32).map { Character(Unicode.Scalar($0)!) }.map(String.init).joined() + "\u{7F}\u{2028}\u{2029}\\"
        logger.warning(
            "\(forged)",
            metadata: [
                "device": "\(notUTF8)", "payload": "\(control)", "level": "not the level",
                "nested": ["a": "1", "b": ["c": "2"]], "list": ["x", "\"y\""],
            ])
        let raw = try #require(lines.lines.withLock { $0.first })
        // One line: the only newline is the last byte.
        #expect(raw.last == 0x0A)
        #expect(raw.dropLast().allSatisfy { $0 >= 0x20 }, "raw control bytes in \(String(decoding: raw, as: UTF8.self))")
        let object = try #require(lines.objects.first, "\(String(decoding: raw, as: UTF8.self))")
        #expect(object["time"] as? String == "2026-11-26T16:31:15.007Z")
        #expect(object["level"] as? String == "warning")
        #expect(object["label"] as? String == "updraft.test")
        #expect(object["message"] as? String == forged)
        #expect(object["source"] as? String == "UpdraftIntegrationTests")
        #expect(object["device"] as? String == notUTF8)
        #expect(object["payload"] as? String == control)
        #expect(object["meta.level"] as? String == "not the level")
        #expect(object["gateway"] as? String == "g1")
        #expect(object["nested.a"] as? String == "1")
        #expect(object["nested.b.c"] as? String == "2")
        #expect(object["list"] as? [String] == ["x", "\"y\""])
        let keys = String(decoding: raw, as: UTF8.self).prefix(60)
        #expect(keys.hasPrefix("{\"time\":\"2026-11-26T16:31:15.007Z\",\"level\""), "\(keys)")
    }

    @Test func timeIsRFC3339InUTCWithMilliseconds() {
        #expect(JSONLogHandler.rfc3339(timespec(tv_sec: 0, tv_nsec: 999_999_999)) == "1970-01-01T00:00:00.999Z")
        #expect(JSONLogHandler.rfc3339(timespec(tv_sec: 951_782_400, tv_nsec: 0)) == "2000-02-29T00:00:00.000Z")
    }

    @Test func everyLevelAndTheLoggersLevelHold() throws {
        let lines = Lines()
        var logger = Self.logger(lines)
        logger.logLevel = .notice
        for level in Logger.Level.allCases { logger.log(level: level, "at \(level)") }
        #expect(lines.objects.compactMap { $0["level"] as? String } == ["notice", "warning", "error", "critical"])
    }

    /// The real binary with UPDRAFT_LOG_FORMAT=json: the configuration warnings (about a
    /// key with a quote, a backslash and a control character in its name) are JSON lines.
    @Test func theCLILogsJSONLines() async throws {
        let cli = try CLIProcess()
        defer { cli.removeLogs() }
        let yaml = cli.logs + "/odd-keys.yaml"
        try "mqtt:\n  \"br\\\"ok\\\\er\\u0007\": 1\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let environment = ["UPDRAFT_LOG_FORMAT": "json", "UPDRAFT_MQTT_BROKR_PORT": "1884"]
        let dir = try await cli.dataDirectory()
        let run = try await cli.run(["release", "list", "--config", yaml, "--data-dir", dir], environment: environment)
        #expect(run.status == 0, "\(run.output)")
        let logLines = run.output.split(separator: "\n").filter { $0.hasPrefix("{\"time\"") }
        let objects = logLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.count == logLines.count, "\(run.output)")
        let messages = objects.compactMap { $0["message"] as? String }
        #expect(messages.contains { $0.contains("unknown configuration key mqtt.br\"ok\\er\u{7}") }, "\(run.output)")
        #expect(messages.contains { $0.contains("UPDRAFT_MQTT_BROKR_PORT") }, "\(run.output)")
        #expect(objects.allSatisfy { $0["level"] as? String == "warning" && $0["label"] as? String == "updraft.config" })
        // A format it does not know is refused naming the variable.
        let bad = try await cli.run(["release", "list", "--data-dir", dir], environment: ["UPDRAFT_LOG_FORMAT": "xml"])
        #expect(bad.status == 1, "\(bad.output)")
        #expect(bad.errors.first?.contains("UPDRAFT_LOG_FORMAT") == true, "\(bad.output)")
    }
}
