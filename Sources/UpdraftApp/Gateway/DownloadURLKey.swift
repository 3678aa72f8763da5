import Foundation
import UpdraftCore

#if canImport(Glibc)
import Glibc
#endif

/// The key download URLs are signed with: `<data_dir>/download-url.key` (0600, base64),
/// made once; every gateway start on the data directory reads the same key, so URLs in
/// offers survive a restart.
enum DownloadURLKey {
    static func load(dataDirectory: String) throws -> DownloadURLSigner {
        let path = URL(fileURLWithPath: dataDirectory).appendingPathComponent("download-url.key").path
        if !FileManager.default.fileExists(atPath: path) { try make(path) }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let key = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            throw UpdraftError(
                "download_key_invalid", "\(path) is not a base64 key; delete it (a new one is made at the next start; URLs already sent stop working).")
        }
        return try DownloadURLSigner(key: Array(key))
    }

    /// Written to a 0600 temporary file and linked into place: a concurrent maker's key wins whole.
    private static func make(_ path: String) throws {
        let temporary = path + ".\(UInt32.random(in: 0...UInt32.max)).tmp"
        defer { unlink(temporary) }
        let text = Data(DownloadURLSigner.generateKey()).base64EncodedString() + "\n"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]),
            chmod(temporary, 0o600) == 0, link(temporary, path) == 0 || errno == EEXIST
        else {
            throw UpdraftError("download_key_unwritable", "Cannot write \(path); make the data directory writable by the gateway's user.")
        }
    }
}
