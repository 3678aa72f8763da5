import Foundation
import UpdraftCoAP
import UpdraftCore
import UpdraftMQTT
import UpdraftSettings
import UpdraftWire

/// Input: a YAML configuration file, read as `updraft serve --config FILE` reads it
/// (`ConfigSource`: swift-configuration's YAML provider over the environment, then the
/// unknown-key walk over Yams' tree) with the settings types of the modules below the
/// application (MQTT: broker, listeners, topic prefix; CoAP: ports, DTLS, blocks). Not
/// UpdraftApp's or UpdraftHTTP's own settings: the fuzz build stays free of the HTTP stack
/// (README "Fuzzing"); they read their keys through the same `ConfigKeys` calls.
/// It loads or fails with `config_invalid`; a loaded configuration validates, warns only
/// about keys the file holds, its topic prefix is a valid MQTT topic, and its dialect
/// writes topics it parses back.
enum ConfigHarness {
    static let path: String = {
        let directory = NSTemporaryDirectory() + "updraft-fuzz-config-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory + "/updraft.yaml"
    }()

    static func run(_ input: [UInt8]) throws(FuzzFailure) {
        guard FileManager.default.createFile(atPath: path, contents: Data(input)) else { throw FuzzFailure("cannot write \(path)") }
        let outcome = Blocking.run { () async throws -> (MQTTSettings, CoAPSettings, [String], String?) in
            let source = try await ConfigSource.load(file: path)
            let mqtt = MQTTSettings(reader: source.keys.scoped(to: "mqtt"))
            let coap = CoAPSettings(reader: source.keys.scoped(to: "coap"))
            let warnings = try source.finish(environment: [:])
            try mqtt.validate()
            try coap.validate()
            return (mqtt, coap, warnings, source.yaml)
        }
        switch outcome {
        case .failure(let error as UpdraftError):
            try expectCode(error.code, in: ["config_invalid"], error.message)
        case .failure(let error):
            throw FuzzFailure("load threw \(type(of: error)), not an UpdraftError: \(error)")
        case .success(let (mqtt, _, warnings, yaml)):
            try expect(yaml != nil, "loaded without reading \(path)")
            try warned(warnings, yaml ?? "")
            try topics(mqtt.dialect)
        }
    }

    /// Every warning names a key the file holds.
    static func warned(_ warnings: [String], _ yaml: String) throws(FuzzFailure) {
        let leaves = ConfigKeys.leaves(ofYAML: yaml).map(\.key)
        for warning in warnings {
            try expect(leaves.contains { warning.hasPrefix("unknown configuration key \($0) in ") }, "warning '\(warning)' names no key of the file")
        }
    }

    /// MQTT topics may hold neither wildcards nor U+0000 (a C string ends there); the
    /// configured dialect parses back every topic it writes.
    static func topics(_ dialect: UpdraftDialectV1) throws(FuzzFailure) {
        try expect(!dialect.prefix.unicodeScalars.contains { "+#\u{0}".unicodeScalars.contains($0) }, "topic prefix '\(dialect.prefix.debugDescription)' was accepted")
        for kind in WireTopicKind.allCases {
            let parsed = dialect.parse(dialect.topic(kind, of: "thermo-1"))
            try expect(parsed == WireTopic(device: "thermo-1", kind: kind), "prefix '\(dialect.prefix)': \(kind) topic parses as \(String(describing: parsed))")
        }
    }
}

/// Runs async work to completion from the fuzzer's synchronous callback.
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Result<T, any Error> {
        let box = Box<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                box.value = .success(try await body())
            } catch {
                box.value = .failure(error)
            }
            done.signal()
        }
        done.wait()
        return box.value!
    }

    private final class Box<T>: @unchecked Sendable {  // written before `signal`, read after `wait`
        var value: Result<T, any Error>?
    }
}
