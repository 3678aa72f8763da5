import Foundation
import UpdraftApp
import UpdraftCore
import UpdraftWire

/// Input: a YAML configuration file, loaded as `updraft serve --config FILE` loads it
/// (swift-configuration's YAML provider, the unknown-key walk, every module's settings
/// and their checks). It loads or fails with `config_invalid`; a loaded configuration
/// validates, its topic prefix is a valid MQTT topic, and its dialect writes topics it
/// parses back.
enum ConfigHarness {
    static let path: String = {
        let directory = NSTemporaryDirectory() + "updraft-fuzz-config-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory + "/updraft.yaml"
    }()

    static func run(_ input: [UInt8]) throws(FuzzFailure) {
        guard FileManager.default.createFile(atPath: path, contents: Data(input)) else { throw FuzzFailure("cannot write \(path)") }
        let outcome = Blocking.run { try await UpdraftConfiguration.load(file: path) }
        let configuration: UpdraftConfiguration
        switch outcome {
        case .failure(let error as UpdraftError):
            try expectCode(error.code, in: ["config_invalid"], error.message)
            return
        case .failure(let error):
            throw FuzzFailure("load threw \(type(of: error)), not an UpdraftError: \(error)")
        case .success(let loaded):
            configuration = loaded
        }
        do throws(UpdraftError) {
            try configuration.validate()
        } catch {
            throw FuzzFailure("a loaded configuration does not validate: \(error)")
        }
        let dialect = configuration.dialect
        // MQTT topics may hold neither wildcards nor U+0000 (a C string ends there).
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
