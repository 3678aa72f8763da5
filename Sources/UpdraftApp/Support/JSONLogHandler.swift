#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import Logging

/// How log lines are written (`log_format`): text for people, JSON for log collectors.
public enum LogFormat: String, Sendable, CaseIterable {
    case text
    case json
}

/// `log_format: json`: one JSON object per line on stderr, for log collectors (Loki,
/// Elasticsearch, journald's JSON export):
///
/// ```json
/// {"time":"2026-11-26T18:31:15.123Z","level":"info","label":"updraft","message":"gateway connected","source":"UpdraftApp","broker":"127.0.0.1:1883"}
/// ```
///
/// `time` is RFC 3339 in UTC with milliseconds; the metadata (the logger's, its provider's
/// and the call's) follows as string fields, nested values flattened to `key.sub` and
/// lists to JSON arrays of strings; a metadata key that is one of the fixed fields gets a
/// `meta.` prefix. Every string is escaped, so control characters and quotes a device put
/// in an id or payload cannot break the line or forge a field.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    let label: String
    let output: @Sendable ([UInt8]) -> Void
    let clock: @Sendable () -> timespec

    static let fixedFields: Set<String> = ["time", "level", "label", "message", "source", "error"]

    /// - Parameter output: receives each line, newline included (the default writes stderr).
    public init(
        label: String, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider,
        output: @escaping @Sendable ([UInt8]) -> Void = JSONLogHandler.standardError
    ) {
        self.init(label: label, metadataProvider: metadataProvider, output: output, clock: JSONLogHandler.now)
    }

    init(
        label: String, metadataProvider: Logger.MetadataProvider?, output: @escaping @Sendable ([UInt8]) -> Void,
        clock: @escaping @Sendable () -> timespec
    ) {
        (self.label, self.metadataProvider, self.output, self.clock) = (label, metadataProvider, output, clock)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let call = event.metadata { merged.merge(call) { _, new in new } }
        output(line(event, metadata: merged))
    }

    /// The JSON line of `event`, newline included.
    func line(_ event: LogEvent, metadata: Logger.Metadata) -> [UInt8] {
        var json = JSONLine()
        json.field("time", Self.rfc3339(clock()))
        json.field("level", event.level.rawValue)
        json.field("label", label)
        json.field("message", event.message.description)
        json.field("source", event.source)
        if let error = event.error { json.field("error", "\(error)") }
        for (key, value) in Self.flattened(metadata).sorted(by: { $0.key < $1.key }) {
            let name = Self.fixedFields.contains(key) ? "meta.\(key)" : key
            switch value {
            case .list(let items): json.field(name, items)
            case .text(let text): json.field(name, text)
            }
        }
        return json.finish()
    }

    enum FlatValue {
        case text(String)
        case list([String])
    }

    /// Nested dictionaries become `key.sub` fields; lists stay lists, of their items' descriptions.
    static func flattened(_ metadata: Logger.Metadata, prefix: String = "") -> [String: FlatValue] {
        var fields: [String: FlatValue] = [:]
        for (key, value) in metadata {
            let name = prefix + key
            switch value {
            case .string(let text): fields[name] = .text(text)
            case .stringConvertible(let value): fields[name] = .text(value.description)
            case .array(let items): fields[name] = .list(items.map(\.description))
            case .dictionary(let nested): fields.merge(flattened(nested, prefix: name + ".")) { _, new in new }
            }
        }
        return fields
    }

    /// `2026-11-26T18:31:15.123Z`.
    static func rfc3339(_ time: timespec) -> String {
        var seconds = time_t(time.tv_sec)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let date = "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
        let clock = "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
        return "\(date)T\(clock).\(pad(Int32(time.tv_nsec / 1_000_000), 3))Z"
    }

    @Sendable static func now() -> timespec {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return time
    }

    /// Writes the whole line with as few `write(2)` calls as it takes (one, for a line
    /// below the pipe buffer: lines of concurrent loggers do not interleave).
    @Sendable public static func standardError(_ line: [UInt8]) {
        line.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}

/// One JSON object being written, field by field.
struct JSONLine {
    private var bytes: [UInt8] = [UInt8(ascii: "{")]

    mutating func field(_ name: String, _ value: String) {
        key(name)
        Self.string(value, into: &bytes)
    }

    mutating func field(_ name: String, _ values: [String]) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            Self.string(value, into: &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func finish() -> [UInt8] {
        bytes.append(contentsOf: [UInt8(ascii: "}"), UInt8(ascii: "\n")])
        return bytes
    }

    private mutating func key(_ name: String) {
        if bytes.count > 1 { bytes.append(UInt8(ascii: ",")) }
        Self.string(name, into: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    /// A JSON string (RFC 8259): quotes, backslashes and every control character escaped,
    /// and U+2028/U+2029 too (they end lines for some readers). A Swift String is valid
    /// Unicode, so bytes that were not UTF-8 arrive here as U+FFFD already.
    static func string(_ value: String, into bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": bytes.append(contentsOf: Array(#"\""#.utf8))
            case "\\": bytes.append(contentsOf: Array(#"\\"#.utf8))
            case "\n": bytes.append(contentsOf: Array(#"\n"#.utf8))
            case "\r": bytes.append(contentsOf: Array(#"\r"#.utf8))
            case "\t": bytes.append(contentsOf: Array(#"\t"#.utf8))
            case _ where scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028 || scalar.value == 0x2029:
                let hex = String(scalar.value, radix: 16)
                bytes.append(contentsOf: Array(("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).utf8))
            default:
                UTF8.encode(scalar) { bytes.append($0) }
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
