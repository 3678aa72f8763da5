import Foundation

/// Reads the repository's own files for the tests that check documentation against code
/// (error codes in the protocol and HTTP API articles).
package enum SourceScan {
    /// The repository root (this file is Tests/UpdraftTestSupport/SourceScan.swift).
    package static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The first capture of each match of `pattern` in the Swift files under `paths`
    /// (folders, or single files), relative to the root.
    package static func literals(_ pattern: String, in paths: [String]) throws -> Set<String> {
        let regex = try Regex(pattern)
        var found: Set<String> = []
        for path in paths {
            let base = root.appendingPathComponent(path)
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: base.path, isDirectory: &isFolder) else { throw CocoaError(.fileNoSuchFile) }
            let files =
                isFolder.boolValue
                ? FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? [] : [base]
            for file in files where file.pathExtension == "swift" {
                let text = try String(contentsOf: file, encoding: .utf8)
                for match in text.matches(of: regex) {
                    if let code = match.output[1].substring { found.insert(String(code)) }
                }
            }
        }
        return found
    }

    /// A file's text, relative to the root.
    package static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }
}
