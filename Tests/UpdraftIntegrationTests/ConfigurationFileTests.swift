import Configuration
import Foundation
import Testing
import UpdraftApp
import UpdraftSettings

/// Config/updraft.yaml documents exactly the keys updraft reads, each with the default the
/// code uses. The keys in code are those a read of an empty configuration asks for
/// (`ConfigKeys` remembers each with its default), so a new key cannot be forgotten here.
@Suite struct ConfigurationFileTests {
    static func keysInCode() throws -> [String: String] {
        let keys = ConfigKeys(ConfigReader(provider: InMemoryProvider(values: [:])))
        _ = try UpdraftConfiguration(reader: keys)
        return keys.defaults
    }

    static func keysInFile() throws -> [String: String] {
        let text = try String(contentsOf: Peers.packageRoot.appendingPathComponent("Config/updraft.yaml"), encoding: .utf8)
        return Dictionary(ConfigKeys.leaves(ofYAML: text).map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    /// "2" and "2.0", "0.5" and ".5" are the same default.
    static func same(_ a: String, _ b: String) -> Bool {
        a == b || (Double(a) != nil && Double(a) == Double(b))
    }

    @Test func everyKeyInTheFileIsReadWithTheDefaultItDocuments() throws {
        let code = try Self.keysInCode()
        let file = try Self.keysInFile()
        #expect(!file.isEmpty)
        for (key, documented) in file.sorted(by: { $0.key < $1.key }) {
            guard let actual = code[key] else {
                Issue.record("Config/updraft.yaml documents \(key), which updraft does not read")
                continue
            }
            #expect(Self.same(actual, documented), "\(key): the file says \(documented), the code's default is \(actual)")
        }
    }

    @Test func everyKeyUpdraftReadsIsInTheFile() throws {
        let file = try Self.keysInFile()
        let missing = try Self.keysInCode().keys.filter { file[$0] == nil }.sorted()
        #expect(missing == [], "read by updraft but not documented in Config/updraft.yaml")
    }
}
