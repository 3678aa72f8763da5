import Foundation
import UpdraftCore

/// openapi.yaml as this build shipped it: the resource bundle beside the executable
/// (`Updraft_UpdraftHTTP.resources`, which an installation copies with the binary).
/// Looked up by hand rather than through `Bundle.module`, which stops the process when
/// the bundle is missing: here a missing document is a 404 that says what to copy.
struct OpenAPIDocumentFile: Sendable {
    static let bundleName = "Updraft_UpdraftHTTP.resources"
    let candidates: [String]

    init(candidates: [String]? = nil) {
        self.candidates = candidates ?? Self.defaultCandidates
    }

    static var defaultCandidates: [String] {
        var directories = [Bundle.main.bundleURL]
        if let executable = Bundle.main.executableURL { directories.append(executable.deletingLastPathComponent()) }
        return directories.map { $0.appendingPathComponent(bundleName).appendingPathComponent("openapi.yaml").path }
    }

    func bytes() throws -> [UInt8] {
        for path in candidates {
            if let data = FileManager.default.contents(atPath: path) { return Array(data) }
        }
        throw UpdraftError(
            "openapi_document_not_found",
            "This installation lacks openapi.yaml: copy the \(Self.bundleName) folder of the build beside the updraft binary.")
    }
}
