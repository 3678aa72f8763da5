import Foundation
import Testing
import UpdraftFuzz

/// Every committed fuzz input (seeds, and each input that once crashed a parser) replayed
/// through its harness: a fixed crash stays fixed without running the fuzzer.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("UpdraftFuzz/Corpus")

    static func inputs(_ harness: FuzzHarness) -> [URL] {
        let folder = corpus.appendingPathComponent(harness.rawValue)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.sorted().map { folder.appendingPathComponent($0) }
    }

    @Test(arguments: FuzzHarness.allCases)
    func corpusReplays(_ harness: FuzzHarness) throws {
        let inputs = Self.inputs(harness)
        #expect(inputs.count >= 3, "Tests/UpdraftFuzz/Corpus/\(harness.rawValue) has too few seeds")
        for input in inputs {
            let data = try Data(contentsOf: input)
            do {
                try harness.run(Array(data))
            } catch {
                Issue.record("\(harness.rawValue)/\(input.lastPathComponent): \(error)")
            }
        }
    }
}
