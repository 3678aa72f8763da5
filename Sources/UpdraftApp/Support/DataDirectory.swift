import Foundation
import UpdraftCore

/// The data directory, with errors that name it instead of Foundation's error dumps.
public enum DataDirectory {
    /// Makes sure `path` is a folder, creating it (and its parents) when missing.
    public static func create(_ path: String) throws(UpdraftError) {
        try checkNotEmpty(path)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
            guard isFolder.boolValue else { throw notAFolder(path) }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw UpdraftError(
                "data_dir_unwritable",
                "Cannot create the data directory '\(path)' (\(reason(error))). Create it, or point data_dir (or --data-dir) at a folder this user can write.")
        }
    }

    /// For commands that only work on recorded data: the folder must exist already.
    public static func requireExisting(_ path: String) throws(UpdraftError) {
        try checkNotEmpty(path)
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw UpdraftError(
                "data_dir_missing",
                "The data directory '\(path)' does not exist. Check --data-dir or data_dir (a typo?); `updraft serve` or `updraft firmware add` creates it.")
        }
        guard isFolder.boolValue else { throw notAFolder(path) }
    }

    private static func checkNotEmpty(_ path: String) throws(UpdraftError) {
        guard path.trimmingCharacters(in: .whitespaces).isEmpty else { return }
        throw UpdraftError("config_invalid", "data_dir is empty. Set it to the folder for the store, keys and images (the default is data).")
    }

    private static func notAFolder(_ path: String) -> UpdraftError {
        UpdraftError("data_dir_not_folder", "The data directory '\(path)' is a file, not a folder. Point data_dir (or --data-dir) at a folder.")
    }

    /// The short reason inside a Foundation file error ("Permission denied", "File exists").
    static func reason(_ error: any Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError,
            underlying.domain == NSPOSIXErrorDomain
        {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return (error as NSError).localizedDescription
    }
}
