import Logging
import UpdraftCore
import UpdraftWire

/// The steps every adapter takes for a device's request, whatever its framing: identify
/// the device, decode the body, call the engine and deliver the commands it returns through
/// the router, refuse with an ``UpdraftError`` code, count, and fetch image bytes. The
/// adapter keeps only what its protocol owns (topics or resources, replies, flow control).
///
/// There is no "engine not attached yet" state: an adapter is made with the engine, and a
/// store that cannot be written is the engine's `unavailable` refusal, answered by every
/// adapter the same way (retry later).
public struct DevicePipeline: Sendable {
    public let transport: Transport
    public let engine: UpdateEngine
    public let router: DeviceCommandRouter
    public let images: any FirmwareImageSource
    public let counters: GatewayCounters
    /// Signed HTTP download URLs for offers; `nil` when the gateway serves no HTTP downloads.
    public let links: DownloadLinks?
    private let logger: Logger

    public init(
        transport: Transport, engine: UpdateEngine, router: DeviceCommandRouter, images: any FirmwareImageSource,
        counters: GatewayCounters = GatewayCounters(), links: DownloadLinks? = nil, logger: Logger
    ) {
        self.links = links
        self.transport = transport
        self.engine = engine
        self.router = router
        self.images = images
        self.counters = counters
        self.logger = logger
    }

    /// Registers `adapter` with the router, for the commands addressed to its transport.
    public func serve(_ adapter: any DeviceAdapter) {
        precondition(adapter.transport == transport, "an adapter serves the transport of its pipeline")
        router.register(adapter)
    }

    // MARK: Identify, decode, refuse, count

    /// The device a raw identity names; `bad_device_id` (counted) when it is not a valid id.
    public func identify(_ raw: String) -> Result<DeviceID, UpdraftError> {
        do {
            return .success(try DeviceID(validating: raw))
        } catch {
            let error = UpdraftError("bad_device_id", "'\(raw.prefix(64))' is not a valid device id")
            count(error)
            return .failure(error)
        }
    }

    /// Decodes a JSON body of the device API; `malformed_<what>` (not counted yet: the
    /// caller refuses it) when it cannot.
    public func decode<Body: Decodable>(_ payload: [UInt8], _ what: String, example: String) -> Result<Body, UpdraftError> {
        do {
            return .success(try WireJSON.decode(payload, what, example: example))
        } catch {
            return .failure(error)
        }
    }

    /// Counts a refusal (`rejected.<code>`) and says why in the log.
    public func refuse(_ error: UpdraftError, device: DeviceID?, metadata: Logger.Metadata = [:]) {
        count(error)
        var metadata = metadata
        metadata["error.code"] = "\(error.code)"
        metadata["device.id"] = "\(device?.rawValue ?? "-")"
        metadata["transport"] = "\(transport.rawValue)"
        logger.notice("refused device message", metadata: metadata)
    }

    /// Counts a refusal that is not logged (one of many of the same kind).
    public func count(_ error: UpdraftError) { counters.increment("rejected.\(error.code)") }

    public func count(_ key: String, by amount: Int = 1) { counters.increment(key, by: amount) }

    // MARK: Engine calls (commands delivered before they return)

    public func presence(_ id: DeviceID, online: Bool, silentFor: Duration = .zero, replayed: Bool = false) async {
        router.deliver(await engine.presence(id, online: online, via: transport, silentFor: silentFor, replayed: replayed))
    }

    /// The refusal to answer (counted), or nil when the announcement was taken. A replayed
    /// (retained) announcement is not the device speaking: its refusal is neither counted
    /// nor meant to be answered.
    public func announced(_ id: DeviceID, _ announcement: Announcement, replayed: Bool = false) async -> UpdraftError? {
        let reply = await engine.announced(id, announcement, via: transport, replayed: replayed)
        router.deliver(reply.commands)
        if let refusal = reply.refusal, !replayed { count(refusal) }
        return reply.refusal
    }

    /// The refusal to answer (counted), or nil when the report was taken.
    public func report(_ id: DeviceID, job: JobID, _ report: DeviceReport) async -> UpdraftError? {
        let reply = await engine.report(id, job: job, report)
        router.deliver(reply.commands)
        if let refusal = reply.refusal { count(refusal) }
        return reply.refusal
    }

    public func activeJob(of id: DeviceID) async -> Job? { await engine.activeJob(of: id) }

    /// The offer of a job, with its HTTP download URL when the gateway serves them.
    public func offer(_ job: Job, firmware: Firmware, to device: DeviceID, limits: ChunkLimits? = nil, download: String? = nil) -> JobOffer {
        JobOffer(job: job, firmware: firmware, limits: limits, download: download, url: links?.url(device: device, job: job.id, firmware: firmware))
    }

    /// The answer to "is an update pending for me?", with the job's download URL when
    /// the gateway serves HTTP downloads.
    public func pending(of id: DeviceID) async -> PendingBody {
        guard let job = await engine.activeJob(of: id) else { return PendingBody(job: nil) }
        guard let links, let firmware = await engine.firmware(for: job) else { return PendingBody(job: job) }
        return PendingBody(job: job, url: links.url(device: id, job: job.id, firmware: firmware))
    }

    // MARK: Image bytes

    /// What a device may download for a job: its firmware and the image bytes.
    public struct Download: Sendable {
        public var firmware: Firmware
        public var image: [UInt8]
    }

    /// Authorises a download for the device's job and fetches the image; the refusal
    /// (counted) when the job is not the device's active one or the image cannot be read.
    public func download(_ id: DeviceID, job: JobID) async -> Result<Download, UpdraftError> {
        switch await engine.authorizeDownload(id, job: job) {
        case .failure(let error):
            count(error)
            return .failure(error)
        case .success(let firmware):
            return image(of: firmware).map { Download(firmware: firmware, image: $0) }
        }
    }

    /// The image bytes of a firmware; `image_unavailable` (counted and logged) for a read
    /// error that is not an ``UpdraftError`` already.
    public func image(of firmware: Firmware) -> Result<[UInt8], UpdraftError> {
        do {
            return .success(try images.image(for: firmware))
        } catch let error as UpdraftError {
            count(error)
            return .failure(error)
        } catch {
            logger.error("image read failed", metadata: ["firmware.id": "\(firmware.id)", "error": "\(error)"])
            let refusal = UpdraftError("image_unavailable", "The gateway cannot read the image right now; retry later.")
            count(refusal)
            return .failure(refusal)
        }
    }
}
