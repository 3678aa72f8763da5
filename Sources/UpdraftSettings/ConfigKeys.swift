import Configuration
import Foundation
import Synchronization
import UpdraftCore
import Yams

/// Reads configuration keys like `ConfigReader`, but a value of the wrong type or out of
/// range is a problem, not a silent fallback to the default: `ConfigReader.int(forKey:default:)`
/// returns the default when "abc" is not a number. Every read key is remembered, so
/// that keys in the file that nobody reads can be reported as unknown.
///
/// Each settings type reads its own keys through it, beside where the type is defined
/// (`init(reader:)`, as Hummingbird's `ApplicationConfiguration(reader:)`), from the scope
/// it is given. Adding a key: read it with its bounds and document it, with the same
/// default, in Config/updraft.yaml (a test compares the file with ``defaults``):
///
///     reader.int(forKey: "max_control_bytes", default: d.maxControlBytes, in: 256...1_048_576)
public struct ConfigKeys: Sendable {
    private let reader: ConfigReader
    private let prefix: String
    private let state: State

    public init(_ reader: ConfigReader) {
        self.reader = reader
        prefix = ""
        state = State()
    }

    private init(reader: ConfigReader, prefix: String, state: State) {
        self.reader = reader
        self.prefix = prefix
        self.state = state
    }

    public func scoped(to scope: String) -> ConfigKeys {
        ConfigKeys(reader: reader.scoped(to: ConfigKey(scope)), prefix: name(scope), state: state)
    }

    // MARK: Typed reads

    public func string(forKey key: String, isSecret: Bool = false, default defaultValue: String) -> String {
        state.read(name(key), default: defaultValue)
        return reader.string(forKey: ConfigKey(key), isSecret: isSecret) ?? defaultValue
    }

    /// A string that must be one of `allowed`.
    public func string(forKey key: String, default defaultValue: String, oneOf allowed: [String]) -> String {
        let value = string(forKey: key, default: defaultValue)
        guard allowed.contains(value) else {
            reject(key, value, "one of \(allowed.joined(separator: ", "))")
            return defaultValue
        }
        return value
    }

    public func int(forKey key: String, default defaultValue: Int, in range: ClosedRange<Int>? = nil) -> Int {
        typed(key, defaultValue, "a whole number" + (range.map { " in \($0.lowerBound)...\($0.upperBound)" } ?? "")) {
            try reader.requiredInt(forKey: ConfigKey(key))
        } valid: { range?.contains($0) ?? true }
    }

    public func double(forKey key: String, default defaultValue: Double, in range: ClosedRange<Double>? = nil) -> Double {
        typed(key, defaultValue, "a number" + (range.map { " in \($0.lowerBound)...\($0.upperBound)" } ?? "")) {
            try reader.requiredDouble(forKey: ConfigKey(key))
        } valid: { range?.contains($0) ?? true }
    }

    /// A duration given in whole `unit`s (seconds unless the key's name ends in `_ms`).
    public func duration(
        forKey key: String, default defaultValue: Duration, unit: Duration = .seconds(1), in range: ClosedRange<Int>
    ) -> Duration {
        unit * int(forKey: key, default: Int(defaultValue / unit), in: range)
    }

    /// A list of strings: a YAML sequence, or comma-separated in an environment variable.
    public func strings(forKey key: String, default defaultValue: [String]) -> [String] {
        state.read(name(key), default: Self.listText(defaultValue))
        return reader.stringArray(forKey: ConfigKey(key)) ?? defaultValue
    }

    /// How a list's default is remembered and how ``leaves(ofYAML:)`` gives a YAML sequence.
    static func listText(_ items: [String]) -> String { "[" + items.joined(separator: ", ") + "]" }

    public func bool(forKey key: String, default defaultValue: Bool) -> Bool {
        typed(key, defaultValue, "true or false") { try reader.requiredBool(forKey: ConfigKey(key)) } valid: { _ in true }
    }

    /// Records that `value` of `key` is not `expected`; the start stops with it.
    public func reject(_ key: String, _ value: String, _ expected: String) {
        state.problem(name(key), value, expected)
    }

    /// The first wrong value, as one line naming the key, its value and what it must be.
    public func check() throws(UpdraftError) {
        if let problem = state.problems.first { throw problem }
    }

    /// Keys in the YAML file this build does not read. A scalar where a group of keys
    /// belongs (`store: 5`) is an error; any other unknown key only a warning, so that a
    /// file written for a newer updraft still starts.
    public func unknownKeys(inYAML text: String, file: String) throws(UpdraftError) -> [String] {
        let known = state.keys
        var warnings: [String] = []
        for leaf in Self.leaves(ofYAML: text) where !known.contains(leaf.key) {
            let inside = known.filter { $0.hasPrefix(leaf.key + ".") }.sorted()
            if !inside.isEmpty {
                throw UpdraftError(
                    "config_invalid",
                    "\(leaf.key) in \(file) is '\(leaf.value.prefix(60))', but it is a group of keys (\(inside.prefix(3).joined(separator: ", "))); see Config/updraft.yaml.")
            }
            warnings.append("unknown configuration key \(leaf.key) in \(file) is ignored; see Config/updraft.yaml for the keys.")
        }
        return warnings
    }

    /// The scalars of a YAML mapping by their dotted key path (`mqtt.broker.port`), in file
    /// order; empty when the text is not a mapping.
    public static func leaves(ofYAML text: String) -> [(key: String, value: String)] {
        guard let root = try? Yams.compose(yaml: text), case .mapping = root else { return [] }
        var leaves: [(key: String, value: String)] = []
        func walk(_ node: Node, _ path: String) {
            if let mapping = node.mapping {
                for (key, child) in mapping { walk(child, path.isEmpty ? key.string ?? "?" : path + "." + (key.string ?? "?")) }
            } else {
                let items = node.sequence.map { Array($0).map { $0.scalar?.string ?? "?" } }
                leaves.append((path, node.scalar?.string ?? items.map(listText) ?? "(a list)"))
            }
        }
        walk(root, "")
        return leaves
    }

    /// The CLI's own variables (the remote gateway and its token), not configuration keys.
    public static let clientVariables: Set<String> = ["UPDRAFT_SERVER", "UPDRAFT_TOKEN"]

    /// `UPDRAFT_*` environment variables that name no key this build reads.
    public func unknownVariables(in environment: [String: String]) -> [String] {
        let known = Set(state.keys.map(Self.variable)).union(Self.clientVariables)
        return environment.keys.filter { $0.hasPrefix("UPDRAFT_") && !known.contains($0) }.sorted().map {
            "environment variable \($0) names no configuration key and is ignored; see Config/updraft.yaml for the keys."
        }
    }

    /// The environment variable that overrides `key`: mqtt.broker.port -> UPDRAFT_MQTT_BROKER_PORT.
    public static func variable(_ key: String) -> String {
        "UPDRAFT_" + key.uppercased().replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "-", with: "_")
    }

    /// Every key read so far with its default as text: after reading a whole
    /// configuration, the registry of the keys this build knows (Config/updraft.yaml
    /// documents the same keys with the same defaults).
    public var defaults: [String: String] { state.defaults }

    // MARK: Internals

    private func name(_ key: String) -> String { prefix.isEmpty ? key : prefix + "." + key }

    private func typed<T>(
        _ key: String, _ defaultValue: T, _ expected: String, _ read: () throws -> T, valid: (T) -> Bool
    ) -> T {
        state.read(name(key), default: "\(defaultValue)")
        // Absent: the default. The raw text (every provider can give a scalar as a string)
        // is what the error quotes.
        guard let raw = reader.string(forKey: ConfigKey(key)) else { return defaultValue }
        guard let value = try? read(), valid(value) else {
            reject(key, raw, expected)
            return defaultValue
        }
        return value
    }

    private final class State: Sendable {
        private let storage = Mutex<(defaults: [String: String], problems: [UpdraftError])>(([:], []))

        func read(_ key: String, default value: String) { storage.withLock { $0.defaults[key] = value } }

        func problem(_ key: String, _ value: String, _ expected: String) {
            let error = UpdraftError(
                "config_invalid", "Configuration key \(key) (or \(ConfigKeys.variable(key))) is '\(value.prefix(60))'; it must be \(expected).")
            storage.withLock { $0.problems.append(error) }
        }

        var keys: Set<String> { Set(defaults.keys) }
        var defaults: [String: String] { storage.withLock { $0.defaults } }
        var problems: [UpdraftError] { storage.withLock { $0.problems } }
    }
}

extension UpdraftError {
    /// A configuration value updraft cannot use; the command stops with it before it starts
    /// anything. Never sent to a device.
    public static func configInvalid(_ message: String) -> UpdraftError { UpdraftError("config_invalid", message) }
}
