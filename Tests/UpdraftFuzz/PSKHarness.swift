import Foundation
import UpdraftCoAP

/// Input: a PSK file (`<device id> <key>` lines). Parsed as the gateway reads it during
/// handshakes, then rewritten by `device provision` (`PSKFile.issue`) for one device:
/// every other device keeps its key, the provisioned one gets the new key.
enum PSKHarness {
    static let directory: String = {
        let path = NSTemporaryDirectory() + "updraft-fuzz-psk-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    static func run(_ input: [UInt8]) throws(FuzzFailure) {
        let text = String(decoding: input, as: UTF8.self)
        let keys = PSKFile.parse(text)
        for (identity, key) in keys {
            try expect(!identity.isEmpty && !identity.hasPrefix("#") && !identity.contains(" "), "identity '\(identity)'")
            try expect(!key.isEmpty && key.count <= 64, "key of \(key.count) bytes for '\(identity)'")
            try expect(!identity.contains(where: \.isNewline) && !key.contains(10) && !key.contains(13), "line break in '\(identity)'")
        }
        let written = keys.map { "\($0.key) \(String(decoding: $0.value, as: UTF8.self))" }.sorted().joined(separator: "\n")
        try expect(PSKFile.parse(written) == keys, "keys do not round-trip:\n\(written)")
        try edits(text, keys)
        // The file itself (lock, 0600 temporary file, rename) for one input in 16: the
        // edits above are the logic, this is I/O that would cap the fuzzer at ~100 exec/s.
        if input.count % 16 == 0 { try provision(text, keys) }
    }

    static let key = "Fuzz23456789abcdefghijkm"

    /// `device provision thermo-1` and `device revoke` of the first device, as the edits
    /// `issue` and `remove` make to the file's text: every other device keeps its key.
    static func edits(_ text: String, _ keys: [String: [UInt8]]) throws(FuzzFailure) {
        var expected = keys
        expected["thermo-1"] = Array(key.utf8)
        let issued = PSKFile.parse(PSKFile.edited(text) { PSKFile.issuing(["thermo-1"], [key], in: &$0) })
        try expect(issued == expected, "provisioning thermo-1 changed other keys: \(keys) became \(issued)")
        guard let gone = keys.keys.min() else { return }
        var removed: Set<String> = []
        let after = PSKFile.parse(PSKFile.edited(text) { removed = PSKFile.removing([gone], in: &$0) })
        expected = keys
        expected[gone] = nil
        try expect(after == expected && removed == [gone], "revoking \(gone) left \(after), removed \(removed)")
    }

    /// `device provision thermo-1` on a file holding `text`.
    static func provision(_ text: String, _ keys: [String: [UInt8]]) throws(FuzzFailure) {
        let path = directory + "/coap-psk.txt"
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else { throw FuzzFailure("cannot write \(path)") }
        let device = "thermo-1"
        guard let issued = try? PSKFile.issue(for: device, path: path) else { throw FuzzFailure("issue failed") }
        let after = PSKFile(path: path)
        try expect(after.key(for: device) == Array(issued.utf8), "provisioned key not read back")
        var expected = keys
        expected[device] = Array(issued.utf8)
        let reread = PSKFile.parse((try? String(contentsOfFile: path, encoding: .utf8)) ?? "")
        try expect(reread == expected, "provisioning \(device) changed other keys: \(keys) became \(reread)")
    }
}
