import Foundation
import UpdraftFuzz

// `updraft-fuzz`: built with `-sanitize=fuzzer,address -DUPDRAFT_FUZZ` (make fuzz) it is a
// libFuzzer binary running the harness FUZZ_TARGET names; built normally it replays
// inputs: `updraft-fuzz HARNESS FILE...`.

#if UPDRAFT_FUZZ
private let harness: FuzzHarness = {
    let name = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? ""
    guard let harness = FuzzHarness(rawValue: name) else {
        fatalError("Set FUZZ_TARGET to one of \(FuzzHarness.allCases.map(\.rawValue).joined(separator: ", ")); it is '\(name)'.")
    }
    return harness
}()

/// The entry point: SwiftPM points `main` at the executable's own (`--defsym`), which
/// hands over to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@main
struct FuzzMain {
    static func main() {
        _ = harness
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runDriver(&argc, &argv, fuzzOne))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    do {
        try harness.run(input)
    } catch {
        fatalError("\(harness.rawValue): \(error)")
    }
    return 0
}
#else
@main
struct Replay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let harness = FuzzHarness(rawValue: name) else {
            print("usage: updraft-fuzz \(FuzzHarness.allCases.map(\.rawValue).joined(separator: "|")) FILE...")
            exit(2)
        }
        var failed = false
        for file in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: file) else {
                print("\(file): cannot read")
                failed = true
                continue
            }
            do {
                try harness.run(Array(data))
            } catch {
                print("\(file): \(error)")
                failed = true
            }
        }
        exit(failed ? 1 : 0)
    }
}
#endif
