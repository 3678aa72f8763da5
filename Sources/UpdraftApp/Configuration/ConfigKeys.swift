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
/// Adding a key: read it through the scope it belongs to, with its bounds, and
/// document it in Config/updraft.yaml:
///
///     m.int(forKey: "max_control_bytes", default: d.mqtt.maxControlBytes, in: 64...1_048_576)
struct ConfigKeys: Sendable {
    private let reader: ConfigReader
    private let prefix: String
    private let state: State

    init(_ reader: ConfigReader) {
        self.reader = reader
        prefix = ""
        state = State()
    }

    private init(reader: ConfigReader, prefix: String, state: State) {
        self.reader = reader
        self.prefix = prefix
        self.state = state
    }

    func scoped(to scope: String) -> ConfigKeys {
        ConfigKeys(reader: reader.scoped(to: ConfigKey(scope)), prefix: name(scope), state: state)
    }

    // MARK: Typed reads

    func string(forKey key: String, isSecret: Bool = false, default defaultValue: String) -> String {
        state.read(name(key))
        return reader.string(forKey: ConfigKey(key), isSecret: isSecret) ?? defaultValue
    }

    /// A string that must be one of `allowed`.
    func string(forKey key: String, default defaultValue: String, oneOf allowed: [String]) -> String {
        let value = string(forKey: key, default: defaultValue)
        guard allowed.contains(value) else {
            reject(key, value, "one of \(allowed.joined(separator: ", "))")
            return defaultValue
        }
        return value
    }

    func int(forKey key: String, default defaultValue: Int, in range: ClosedRange<Int>? = nil) -> Int {
        typed(key, defaultValue, "a whole number" + (range.map { " in \($0.lowerBound)...\($0.upperBound)" } ?? "")) {
            try reader.requiredInt(forKey: ConfigKey(key))
        } valid: { range?.contains($0) ?? true }
    }

    func double(forKey key: String, default defaultValue: Double, in range: ClosedRange<Double>? = nil) -> Double {
        typed(key, defaultValue, "a number" + (range.map { " in \($0.lowerBound)...\($0.upperBound)" } ?? "")) {
            try reader.requiredDouble(forKey: ConfigKey(key))
        } valid: { range?.contains($0) ?? true }
    }

    func bool(forKey key: String, default defaultValue: Bool) -> Bool {
        typed(key, defaultValue, "true or false") { try reader.requiredBool(forKey: ConfigKey(key)) } valid: { _ in true }
    }

    /// Records that `value` of `key` is not `expected`; the start stops with it.
    func reject(_ key: String, _ value: String, _ expected: String) {
        state.problem(name(key), value, expected)
    }

    /// The first wrong value, as one line naming the key, its value and what it must be.
    func check() throws(UpdraftError) {
        if let problem = state.problems.first { throw problem }
    }

    /// Keys in the YAML file this build does not read. A scalar where a group of keys
    /// belongs (`store: 5`) is an error; any other unknown key only a warning, so that a
    /// file written for a newer updraft still starts.
    func unknownKeys(inYAML text: String, file: String) throws(UpdraftError) -> [String] {
        guard let root = try? Yams.compose(yaml: text), case .mapping = root else { return [] }
        var leaves: [(key: String, value: String)] = []
        func walk(_ node: Node, _ path: String) {
            if let mapping = node.mapping {
                for (key, child) in mapping { walk(child, path.isEmpty ? key.string ?? "?" : path + "." + (key.string ?? "?")) }
            } else {
                leaves.append((path, node.scalar?.string ?? "(a list)"))
            }
        }
        walk(root, "")
        let known = state.keys
        var warnings: [String] = []
        for leaf in leaves where !known.contains(leaf.key) {
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

    /// `UPDRAFT_*` environment variables that name no key this build reads.
    func unknownVariables(in environment: [String: String]) -> [String] {
        let known = Set(state.keys.map(Self.variable))
        return environment.keys.filter { $0.hasPrefix("UPDRAFT_") && !known.contains($0) }.sorted().map {
            "environment variable \($0) names no configuration key and is ignored; see Config/updraft.yaml for the keys."
        }
    }

    /// The environment variable that overrides `key`: mqtt.broker.port -> UPDRAFT_MQTT_BROKER_PORT.
    static func variable(_ key: String) -> String {
        "UPDRAFT_" + key.uppercased().replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "-", with: "_")
    }

    // MARK: Internals

    private func name(_ key: String) -> String { prefix.isEmpty ? key : prefix + "." + key }

    private func typed<T>(
        _ key: String, _ defaultValue: T, _ expected: String, _ read: () throws -> T, valid: (T) -> Bool
    ) -> T {
        state.read(name(key))
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
        private let storage = Mutex<(keys: Set<String>, problems: [UpdraftError])>(([], []))

        func read(_ key: String) { storage.withLock { _ = $0.keys.insert(key) } }

        func problem(_ key: String, _ value: String, _ expected: String) {
            let error = UpdraftError(
                "config_invalid", "Configuration key \(key) (or \(ConfigKeys.variable(key))) is '\(value.prefix(60))'; it must be \(expected).")
            storage.withLock { $0.problems.append(error) }
        }

        var keys: Set<String> { storage.withLock { $0.keys } }
        var problems: [UpdraftError] { storage.withLock { $0.problems } }
    }
}
