import Foundation
import UpdraftCore

/// A message a device sent, decoded and validated.
public enum DeviceMessage: Sendable, Equatable {
    case announce(Announcement)
    case presence(online: Bool)
    case download(DownloadRequest)
    case progress(JobID, DeviceReport)
}

/// "Send me `count` chunks of `size` bytes starting at byte `offset` of the job's image."
public struct DownloadRequest: Sendable, Equatable, Codable {
    public var job: JobID
    public var offset: Int
    public var count: Int
    public var size: Int

    public init(job: JobID, offset: Int, count: Int, size: Int) {
        self.job = job
        self.offset = offset
        self.count = count
        self.size = size
    }
}

/// Bounds the gateway puts on downloads; sent to devices inside every offer.
public struct ChunkLimits: Sendable, Equatable, Codable {
    public var min: Int
    public var max: Int
    public var preferred: Int
    /// Most chunks in one request.
    public var maxCount: Int

    public init(min: Int = 256, max: Int = 65536, preferred: Int = 4096, maxCount: Int = 64) {
        self.min = min
        self.max = max
        self.preferred = preferred
        self.maxCount = maxCount
    }

    enum CodingKeys: String, CodingKey {
        case min, max, preferred
        case maxCount = "max_count"
    }
}

/// The job offer a device receives on its `job` topic (QoS 1).
public struct JobOffer: Sendable, Equatable, Codable {
    public var job: JobID
    public var firmware: String
    public var product: ProductID
    public var version: FirmwareVersion
    public var size: Int64
    public var sha256: String
    public var sequence: Int64
    /// Base64 of the exact signed manifest bytes (canonical JSON).
    public var manifest: String
    /// Base64 of the Ed25519 signature over those bytes.
    public var signature: String
    public var chunk: ChunkLimits

    public init(job: Job, firmware: Firmware, limits: ChunkLimits) {
        self.job = job.id
        self.firmware = firmware.id
        self.product = firmware.product
        self.version = firmware.version
        self.size = firmware.size
        self.sha256 = firmware.sha256
        self.sequence = firmware.sequence
        self.manifest = firmware.manifest.payloadBase64
        self.signature = firmware.manifest.signatureBase64
        self.chunk = limits
    }

    /// The signed manifest inside, still to be verified.
    public var signedManifest: SignedManifest? {
        guard let payload = Data(base64Encoded: manifest), let sig = Data(base64Encoded: signature) else { return nil }
        return SignedManifest(payload: Array(payload), signature: Array(sig))
    }
}

/// What the gateway answers on a device's `error` topic when it refuses a message.
public struct ErrorReply: Sendable, Equatable, Codable {
    public var code: String
    public var message: String
    public var job: JobID?
    public var offset: Int?

    public init(code: String, message: String, job: JobID? = nil, offset: Int? = nil) {
        self.code = code
        self.message = message
        self.job = job
        self.offset = offset
    }

    public init(_ error: UpdraftError, job: JobID? = nil, offset: Int? = nil) {
        self.init(code: error.code, message: error.message, job: job, offset: offset)
    }
}

/// JSON shapes of device messages (wire types: they stay in this module).
struct AnnounceBody: Codable {
    var product: ProductID
    var version: FirmwareVersion
    var acceptsUpdates: Bool?

    enum CodingKeys: String, CodingKey {
        case product, version
        case acceptsUpdates = "accepts_updates"
    }
}

/// Progress report: `state` is downloading (with `percent`), downloaded, verified,
/// installing, installed, or failed (with `reason` and optional `detail`).
public struct ProgressBody: Codable, Sendable {
    public var job: JobID
    public var state: String
    public var percent: Int?
    public var reason: String?
    public var detail: String?

    public init(job: JobID, report: DeviceReport) {
        self.job = job
        self.state = report.name
        switch report {
        case .downloading(let percent): self.percent = percent
        case .failed(let reason, let detail):
            self.reason = reason.rawValue
            self.detail = detail
        default: break
        }
    }
}
