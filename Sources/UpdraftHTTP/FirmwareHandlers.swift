import Foundation
import OpenAPIRuntime
import UpdraftCore

/// Firmware changes: upload (streamed to disk), show, verify, delete.
extension APIHandlers {
    /// The port for changes and the caller's name as actor; 503 when the server only reads.
    func changes() throws -> (any OperatorPort, ActorName) {
        guard let operations = backend.operations else {
            throw Problem(status: .serviceUnavailable, code: "changes_unavailable", detail: "This server only reads; run the API in `updraft serve`.")
        }
        guard let caller = CallerMiddleware.current else { throw Problem.unauthorized }
        return (operations, .token(caller))
    }

    func uploadFirmware(_ input: Operations.UploadFirmware.Input) async throws -> Operations.UploadFirmware.Output {
        let (operations, actor) = try changes()
        let signing = try Self.signing(product: input.query.product, version: input.query.version, input.headers)
        let body: HTTPBody = switch input.body { case .binary(let body): body }
        let path = try await UploadedFile.receive(body, into: operations.uploadDirectory, limit: operations.maxImageBytes)
        defer { try? FileManager.default.removeItem(atPath: path) }
        switch try await operations.addFirmware(FirmwareUpload(path: path, signing: signing), by: actor) {
        case .added(let firmware): return .created(.init(body: .json(.init(firmware))))
        case .existing(let firmware): return .ok(.init(body: .json(.init(firmware))))
        }
    }

    /// Product and version (signed here), or the manifest and signature headers: one pair.
    static func signing(
        product: String?, version: String?, _ headers: Operations.UploadFirmware.Input.Headers
    ) throws -> FirmwareUpload.Signing {
        let here = product != nil || version != nil
        let signed = headers.updraftManifest != nil || headers.updraftSignature != nil
        if here, !signed, let product, let version { return .here(product: product, version: version) }
        if signed, !here, let manifest = headers.updraftManifest, let signature = headers.updraftSignature {
            guard let payload = strictBase64(manifest), let raw = strictBase64(signature.trimmingCharacters(in: .whitespaces)) else {
                throw UpdraftError(
                    "invalid_signature_encoding",
                    "Updraft-Manifest and Updraft-Signature must be base64: the .manifest file's bytes, and the .sig file's text, from `updraft firmware sign`.")
            }
            return .signed(manifest: Array(payload), signature: Array(raw))
        }
        throw UpdraftError(
            "invalid_upload",
            "Pass either ?product=P&version=V (the gateway signs the manifest) or the Updraft-Manifest and Updraft-Signature headers (signed elsewhere with `updraft firmware sign`), not both and not half of one.")
    }

    /// Base64 with nothing else in it (Foundation skips some stray characters).
    static func strictBase64(_ text: String) -> Data? {
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
        guard !text.isEmpty, text.count % 4 == 0, text.allSatisfy(alphabet.contains) else { return nil }
        return Data(base64Encoded: text)
    }

    func getFirmware(_ input: Operations.GetFirmware.Input) async throws -> Operations.GetFirmware.Output {
        let id = try FirmwareID(validating: input.path.id)
        guard let firmware = try await backend.store.firmware(id: id) else {
            throw UpdraftError.notFound("firmware", id.rawValue, hint: "List the catalog with GET /v1/firmware.")
        }
        let verification = try await backend.store.verification(firmwareID: id) ?? FirmwareVerification(firmwareID: id)
        return .ok(
            .init(
                body: .json(
                    .init(firmware: .init(firmware), verification: verification.status.rawValue, verificationRelease: verification.releaseID?.rawValue))))
    }

    func verifyFirmware(_ input: Operations.VerifyFirmware.Input) async throws -> Operations.VerifyFirmware.Output {
        let (operations, actor) = try changes()
        let id = try FirmwareID(validating: input.path.id)
        let request = switch input.body { case .json(let body): body }
        let devices = try request.devices.map { try DeviceID(validating: $0) }
        let release = try await operations.verifyFirmware(id, devices: devices, by: actor)
        return .created(
            .init(
                body: .json(
                    .init(release: release.id.rawValue, kind: release.kind.rawValue, devices: release.staticMembers?.map(\.rawValue)))))
    }

    func deleteFirmware(_ input: Operations.DeleteFirmware.Input) async throws -> Operations.DeleteFirmware.Output {
        let (operations, actor) = try changes()
        let firmware = try await operations.deleteFirmware(try FirmwareID(validating: input.path.id), by: actor)
        return .ok(.init(body: .json(.init(firmware))))
    }
}

/// A request body written to a file as it arrives, never held whole in memory, and
/// refused with 413 once it passes the limit (before reading when Content-Length says so).
enum UploadedFile {
    static func receive(_ body: HTTPBody, into directory: String, limit: Int64) async throws -> String {
        if case .known(let length) = body.length, length > limit { throw Problem.tooLarge(limit) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/upload-\(UUID().uuidString).part"
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw UpdraftError("image_store_unwritable", "Cannot write an upload into \(directory). Check the data directory's permissions.")
        }
        do {
            var count: Int64 = 0
            for try await chunk in body {
                count += Int64(chunk.count)
                if count > limit { throw Problem.tooLarge(limit) }
                try handle.write(contentsOf: chunk)
            }
            try handle.close()
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        return path
    }
}
