import Foundation
import UpdraftCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Firmware images as files named by their SHA-256: `<directory>/<sha256[0..2]>/<sha256>`.
///
/// Content-addressed, so a put of the same image twice is a no-op and two firmware
/// versions with identical bytes share one file. Files are written to a temporary name,
/// flushed, then renamed, so a reader never sees a partial image.
public struct FileImageStore: FirmwareImageStore {
    public let directory: String

    /// Creates `directory` (and its parents) if needed.
    public init(directory: String) throws {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw Self.unwritable(directory, error)
        }
    }

    /// Where the image with this digest lives (whether or not it exists).
    public func path(sha256: String) throws -> String {
        let digest = try Self.validated(sha256)
        return "\(directory)/\(digest.prefix(2))/\(digest)"
    }

    public func contains(sha256: String) -> Bool {
        guard let path = try? path(sha256: sha256) else { return false }
        return FileManager.default.fileExists(atPath: path)
    }

    public func put(_ bytes: [UInt8], sha256: String) throws {
        let path = try path(sha256: sha256)
        let folder = (path as NSString).deletingLastPathComponent
        if let size = Self.fileSize(path), size == bytes.count { return }
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw Self.unwritable(folder, error)
        }
        let temporary = "\(folder)/.\(sha256.lowercased()).\(UInt64.random(in: 0...UInt64.max)).tmp"
        do {
            try Self.writeSynced(bytes, to: temporary)
            guard rename(temporary, path) == 0 else { throw POSIXError(errno) }
        } catch {
            _ = unlink(temporary)
            throw Self.unwritable(folder, error)
        }
    }

    /// Reads the image. Checks only that it exists and is not empty; digest checks are
    /// the caller's (``FirmwareImageCache`` does one on load, devices do their own).
    public func get(sha256: String) throws -> [UInt8] {
        let path = try path(sha256: sha256)
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else {
            throw UpdraftError(
                "firmware_image_missing",
                "The image with sha256 \(sha256) is missing or empty in \(directory). Restore the images directory from a backup, or add the firmware file again with `updraft firmware add`."
            )
        }
        return Array(data)
    }

    // MARK: Helpers

    static func validated(_ sha256: String) throws -> String {
        let digest = sha256.lowercased()
        guard digest.utf8.count == 64, digest.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else {
            throw UpdraftError.invalid("sha256", sha256, rule: "write 64 hexadecimal digits")
        }
        return digest
    }

    static func fileSize(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
    }

    static func writeSynced(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw POSIXError(errno) }
        defer { close(fd) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress! + written, buffer.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw POSIXError(errno)
            }
            written += result
        }
        // The catalog row that names this image commits after the put returns; the image
        // must be on disk by then.
        guard fsync(fd) == 0 else { throw POSIXError(errno) }
    }

    static func unwritable(_ path: String, _ error: any Error) -> UpdraftError {
        UpdraftError(
            "image_store_unwritable",
            "Cannot write firmware images to \(path) (\(error)). Check data_dir permissions and free disk space."
        )
    }
}

extension POSIXError {
    init(_ code: Int32) {
        self.init(POSIXErrorCode(rawValue: code) ?? .EIO)
    }
}
