import Foundation
import OpenAPIRuntime
import UpdraftCore
import UpdraftHTTP

extension RemoteFleet {
    /// `POST /v1/firmware`: the file is streamed (64 KiB at a time, never whole in memory),
    /// with its length, so a gateway whose `firmware.max_image_bytes` it exceeds refuses it
    /// at once (413).
    public func addFirmware(file: String, signing: FirmwareSigning, progress: @escaping @Sendable (Int64, Int64) -> Void)
        async throws -> (firmware: FirmwareView, existing: Bool)
    {
        let body = try Self.fileBody(file, progress: progress)
        var query = UpdraftHTTP.Operations.UploadFirmware.Input.Query()
        var headers = UpdraftHTTP.Operations.UploadFirmware.Input.Headers()
        switch signing {
        case .here(let product, let version): (query.product, query.version) = (product, version)
        case .signed(let manifest, let signature):
            (headers.updraftManifest, headers.updraftSignature) = (Data(manifest).base64EncodedString(), Data(signature).base64EncodedString())
        }
        let output = try await call { try await longClient.uploadFirmware(query: query, headers: headers, body: .binary(body)) }
        let (firmware, existing) = try call {
            switch output {
            case .created(let created): (try created.body.json, false)
            case .ok(let ok): (try ok.body.json, true)
            default: (try output.created.body.json, false)
            }
        }
        return (try await self.firmware(try FirmwareID(validating: firmware.id)), existing)
    }

    static func fileBody(_ path: String, progress: @escaping @Sendable (Int64, Int64) -> Void) throws -> HTTPBody {
        guard FileManager.default.isReadableFile(atPath: path),
            let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber
        else {
            throw UpdraftError("file_not_found", "Cannot read \(path). Give the path of the image file.")
        }
        return HTTPBody(FileChunks(path: path, size: size.int64Value, progress: progress), length: .known(size.int64Value), iterationBehavior: .single)
    }
}

/// A file read 64 KiB at a time as the transport asks for it (so a slow network never
/// makes the file pile up in memory).
struct FileChunks: AsyncSequence, Sendable {
    let path: String
    let size: Int64
    let progress: @Sendable (Int64, Int64) -> Void

    struct AsyncIterator: AsyncIteratorProtocol {
        let handle: FileHandle?
        let chunks: FileChunks
        var sent: Int64 = 0

        mutating func next() async throws -> ArraySlice<UInt8>? {
            guard let handle else { throw UpdraftError("file_not_found", "Cannot read \(chunks.path).") }
            guard let data = try handle.read(upToCount: 64 * 1024), !data.isEmpty else {
                try? handle.close()
                return nil
            }
            sent += Int64(data.count)
            chunks.progress(sent, chunks.size)
            return ArraySlice(data)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: FileHandle(forReadingAtPath: path), chunks: self) }
}
