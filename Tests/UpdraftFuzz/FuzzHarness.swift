import Foundation

/// The libFuzzer harnesses of every parser that reads bytes from the network or from a
/// file (README "Fuzzing"). Each takes one input and checks invariants, not only that
/// nothing crashes: round trips give back what was decoded, a parse that succeeds yields
/// valid ids, and every refusal is an `UpdraftError` with a code the parser documents.
/// `updraft-fuzz` runs one under libFuzzer; `UpdraftFuzzTests` replays the committed corpus
/// (`Tests/UpdraftFuzz/Corpus/<harness>/`) through the same functions.
public enum FuzzHarness: String, CaseIterable, Sendable {
    /// MQTT: WireDialect topic parsing and the JSON bodies devices and the gateway send.
    case wire
    /// CoAP: a request datagram's options (Uri-Query, Content-Format, Accept, Block2), its
    /// body as the gateway decodes it, and the Block2 window the server answers with.
    case coap
    /// Signed manifests (`firmware add --manifest`) and the job offers devices verify.
    case manifest
    /// The CoAP pre-shared key file, read and rewritten by `device provision`.
    case psk
    /// The YAML configuration file, read as `updraft serve --config` reads it.
    case config

    public func run(_ input: [UInt8]) throws(FuzzFailure) {
        switch self {
        case .wire: try WireHarness.run(input)
        case .coap: try CoAPHarness.run(input)
        case .manifest: try ManifestHarness.run(input)
        case .psk: try PSKHarness.run(input)
        case .config: try ConfigHarness.run(input)
        }
    }
}

/// A broken invariant: the fuzzer stops on it (a crash), the corpus test fails with it.
public struct FuzzFailure: Error, CustomStringConvertible {
    public let description: String

    init(_ description: String) { self.description = description }
}

/// Fails with `message` unless `condition` holds.
func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws(FuzzFailure) {
    if !condition { throw FuzzFailure(message()) }
}

/// Fails unless `code` is one of the codes this parser documents.
func expectCode(_ code: String, in codes: Set<String>, _ what: String) throws(FuzzFailure) {
    try expect(codes.contains(code), "\(what): unexpected error code '\(code)' (expected one of \(codes.sorted()))")
}

/// Splits an input at its first 0 byte: the text before it, and the bytes after it (empty
/// without a 0 byte). Inputs of two parts keep both fuzzable.
func split(_ input: [UInt8]) -> (head: String, tail: [UInt8]) {
    let zero = input.firstIndex(of: 0) ?? input.endIndex
    return (String(decoding: input[..<zero], as: UTF8.self), zero < input.endIndex ? Array(input[(zero + 1)...]) : [])
}
