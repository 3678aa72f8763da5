import Foundation
import UpdraftCore

/// What a device keeps in its storage directory, so a restarted process resumes a
/// download and remembers what it runs:
///
/// - `partial.bin` + `partial.json`: the bytes received from offset 0 without a gap, and
///   the job, image size and sha256 they belong to.
/// - `firmware.bin` + `installed.json`: the installed image and its version and sequence.
/// - `boot.json`: the boot counter announced since the last boot.
///
/// Each JSON file is replaced atomically; `partial.bin` only grows, so a crash mid-write
/// leaves at most a tail that `partial.json` does not count yet.
struct DeviceStorage: Sendable {
    let directory: URL

    struct Partial: Codable, Equatable {
        var job: JobID
        var sha256: String
        var size: Int
        /// Bytes of `partial.bin` that are valid.
        var bytes: Int
    }

    struct Installed: Codable, Equatable {
        var version: FirmwareVersion
        var sequence: Int64
        var sha256: String
    }

    private var partialData: URL { directory.appendingPathComponent("partial.bin") }
    private var partialMeta: URL { directory.appendingPathComponent("partial.json") }
    private var firmware: URL { directory.appendingPathComponent("firmware.bin") }
    private var installedMeta: URL { directory.appendingPathComponent("installed.json") }

    init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    // MARK: Installed firmware

    func installed() -> Installed? { read(installedMeta) }

    func install(_ image: [UInt8], as record: Installed) throws {
        try Data(image).write(to: firmware, options: .atomic)
        try write(record, to: installedMeta)
    }

    // MARK: Boot counter

    private struct Boot: Codable { var boot: UInt64 }
    private var bootMeta: URL { directory.appendingPathComponent("boot.json") }

    /// The counter of the last boot (see ``BootCounter``).
    func boot() -> UInt64? { (read(bootMeta) as Boot?)?.boot }

    /// Best effort: a counter that cannot be written is sent anyway; the next boot may
    /// repeat it, which the gateway takes as "no reboot", never as a failure.
    func saveBoot(_ boot: UInt64) { try? write(Boot(boot: boot), to: bootMeta) }

    // MARK: Partial download

    /// The kept prefix of `job`'s image, when there is one for exactly that image.
    func partial(job: JobID, sha256: String, size: Int) -> [UInt8]? {
        guard let meta: Partial = read(partialMeta), meta.job == job, meta.sha256 == sha256, meta.size == size,
            let data = try? Data(contentsOf: partialData), data.count >= meta.bytes
        else { return nil }
        return Array(data.prefix(meta.bytes))
    }

    /// Records that `image[0..<bytes]` is complete; appends what the file lacks.
    func savePartial(job: JobID, sha256: String, image: [UInt8], bytes: Int) throws {
        let meta: Partial? = read(partialMeta)
        var kept = 0
        if let meta, meta.job == job, meta.sha256 == sha256, meta.size == image.count, meta.bytes <= bytes {
            kept = meta.bytes
        }
        if kept == 0 {
            try Data(image[0..<bytes]).write(to: partialData, options: .atomic)
        } else if bytes > kept {
            let handle = try FileHandle(forWritingTo: partialData)
            defer { try? handle.close() }
            try handle.truncate(atOffset: UInt64(kept))
            try handle.seekToEnd()
            try handle.write(contentsOf: image[kept..<bytes])
        }
        try write(Partial(job: job, sha256: sha256, size: image.count, bytes: bytes), to: partialMeta)
    }

    func discardPartial() {
        try? FileManager.default.removeItem(at: partialMeta)
        try? FileManager.default.removeItem(at: partialData)
        try? FileManager.default.removeItem(at: downloadMeta)
    }

    // MARK: Whole-body download in progress (CoAP Block2)

    /// A Block2 download that began: the job and the ETag its image must come with. A
    /// device that finds it after a restart knows it is fetching the same image again.
    struct Download: Codable, Equatable {
        var job: JobID
        var etag: UInt64
    }

    private var downloadMeta: URL { directory.appendingPathComponent("download.json") }

    func download() -> Download? { read(downloadMeta) }

    func recordDownload(_ download: Download) throws { try write(download, to: downloadMeta) }

    // MARK: Files

    private func read<T: Decodable>(_ url: URL) -> T? {
        guard let data = try? Data(contentsOf: url) else { return nil }
        return try? JSONDecoder().decode(T.self, from: data)
    }

    private func write<T: Encodable>(_ value: T, to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(value).write(to: url, options: .atomic)
    }
}
