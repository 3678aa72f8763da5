import Foundation
import UpdraftCore

/// A small deterministic generator for demo and bench images.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Images for the demo, the benches and the tests: the same bytes for the same seed.
public enum DeterministicImage {
    public static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    }

    /// Writes `count` bytes of seed `seed` to `file` and returns them; `what` names the
    /// image in the error (`demo`, `bench`).
    @discardableResult
    public static func write(_ count: Int, seed: UInt64, to file: String, what: String) throws -> [UInt8] {
        let image = bytes(count, seed: seed)
        guard FileManager.default.createFile(atPath: file, contents: Data(image)) else {
            throw UpdraftError("\(what)_setup", "Cannot write the \(what) image to \(file); check the free space there.")
        }
        return image
    }
}
