import Foundation
import UpdraftCore

// The JSON bodies devices and the gateway exchange, whatever carries them (MQTT topics,
// CoAP resources). Each adapter adds only its own framing: one set of message shapes,
// one set of checks.

/// Bounds the gateway puts on downloads; sent to devices inside every offer.
public struct ChunkLimits: Sendable, Equatable, Codable {
    public var min: Int
    public var max: Int
    public var preferred: Int
    /// Most chunks in one request.
    public var maxCount: Int

    public init(min: Int = 256, max: Int = 65536, preferred: Int = 4096, maxCount: Int = 64) {
        (self.min, self.max, self.preferred, self.maxCount) = (min, max, preferred, maxCount)
    }

    enum CodingKeys: String, CodingKey {
        case min, max, preferred
        case maxCount = "max_count"
    }
}

/// The job offer a device receives: on its MQTT `job` topic (QoS 1), or from its CoAP
/// `job/<device id>` resource. The same signed manifest either way.
public struct JobOffer: Sendable, Equatable, Codable {
    public var job: JobID
    public var firmware: FirmwareID
    public var product: ProductID
    public var version: FirmwareVersion
    public var size: Int64
    public var sha256: String
    public var sequence: Int64
    /// Base64 of the exact signed manifest bytes (canonical JSON).
    public var manifest: String
    /// Base64 of the Ed25519 signature over those bytes.
    public var signature: String
    /// MQTT: the chunk window bounds. Absent over CoAP.
    public var chunk: ChunkLimits?
    /// CoAP: the path of the Block2 image resource. Absent over MQTT.
    public var download: String?
    /// The signed HTTP(S) URL of the image for this device and job (`GET`, Range), when
    /// the gateway serves downloads over HTTP; short-lived: a fresh offer brings a fresh one.
    public var url: String?

    public init(job: Job, firmware: Firmware, limits: ChunkLimits? = nil, download: String? = nil, url: String? = nil) {
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
        self.download = download
        self.url = url
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
    /// The state of the refused progress report (MQTT), so a device knows which one to send again.
    public var state: String?

    public init(code: String, message: String, job: JobID? = nil, offset: Int? = nil, state: String? = nil) {
        (self.code, self.message, self.job, self.offset, self.state) = (code, message, job, offset, state)
    }

    public init(_ error: UpdraftError, job: JobID? = nil, offset: Int? = nil, state: String? = nil) {
        self.init(code: error.code, message: error.message, job: job, offset: offset, state: state)
    }
}

/// What a device announces about itself.
public struct AnnounceBody: Codable, Sendable {
    public var product: ProductID
    public var version: FirmwareVersion
    public var acceptsUpdates: Bool?
    /// CoAP only: seconds the device may stay silent before the gateway takes it for
    /// offline (it announces again before that). MQTT devices have their will instead.
    public var lifetime: Int?
    /// Optional boot counter: greater at every boot of the device, the same for every
    /// announcement of one boot (see ``Announcement/boot``).
    public var boot: UInt64?

    /// The lifetimes a device may announce, in seconds: up to 31 days.
    public static let lifetimes = 1...(31 * 86_400)

    public init(
        product: ProductID, version: FirmwareVersion, acceptsUpdates: Bool? = nil, lifetime: Int? = nil, boot: UInt64? = nil
    ) {
        (self.product, self.version, self.acceptsUpdates) = (product, version, acceptsUpdates)
        (self.lifetime, self.boot) = (lifetime, boot)
    }

    public var announcement: Announcement {
        Announcement(product: product, version: version, acceptsUpdates: acceptsUpdates ?? true, boot: boot)
    }

    enum CodingKeys: String, CodingKey {
        case product, version, lifetime, boot
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

extension ProgressBody {
    /// The report, checked: percent in range, a known state, a reason devices may give.
    public func report() throws(UpdraftError) -> DeviceReport {
        let body = self
        switch body.state {
        case "downloading":
            guard let percent = body.percent, (0...100).contains(percent) else {
                throw UpdraftError("malformed_progress", "A downloading report needs \"percent\" between 0 and 100.")
            }
            return .downloading(percent: percent)
        case "downloaded": return .downloaded
        case "verified": return .verified
        case "installing": return .installing
        case "installed": return .installed
        case "failed":
            guard let raw = body.reason, let reason = FailureReason(rawValue: raw), reason != .timeout else {
                throw UpdraftError("malformed_progress", "A failed report needs \"reason\": one of download, verify, install, rejected.")
            }
            return .failed(reason, detail: body.detail.map { String($0.prefix(500)) })
        default:
            throw UpdraftError("malformed_progress", "Unknown state '\(body.state.prefix(40))': use downloading, downloaded, verified, installing, installed or failed.")
        }
    }
}

/// JSON encoding and decoding with errors a device developer can act on.
public enum WireJSON {
    /// Decodes a device message; the error names what is wrong and shows an example.
    public static func decode<T: Decodable>(_ payload: [UInt8], _ what: String, example: String) throws(UpdraftError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(payload))
        } catch {
            throw UpdraftError("malformed_\(what)", "The \(what) message is not valid: \(Self.describe(error)). Expected JSON like \(example).")
        }
    }

    public static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "wrong type at \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\""
        case DecodingError.dataCorrupted(let context):
            context.codingPath.isEmpty
                ? "not JSON" : "bad value at \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\": \(context.debugDescription)"
        default: "\(error)"
        }
    }

    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(value)) ?? Data())
    }
}

/// The answer to "is an update pending for me?": lets a device that declined updates
/// (`accepts_updates: false`) see what waits for it before it says yes.
public struct PendingBody: Codable, Sendable, Equatable {
    public var pending: Bool
    public var job: JobID?
    public var firmware: FirmwareID?
    /// The job's state, e.g. `queued` (waiting for consent, or not yet offered).
    public var state: String?
    /// The job's signed HTTP download URL, as in ``JobOffer/url``, when the gateway serves
    /// downloads over HTTP.
    public var url: String?

    public init(job: Job?, url: String? = nil) {
        pending = job != nil
        self.job = job?.id
        firmware = job?.firmwareID
        state = job?.state.rawValue
        self.url = job == nil ? nil : url
    }
}
