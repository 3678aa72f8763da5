import Foundation
import Logging
import Mosquitto
import Synchronization
import UpdraftCore
import UpdraftWire

/// Where the gateway gets image bytes for chunks: memory, never the database per chunk.
public protocol ChunkSource: Sendable {
    func image(for firmware: Firmware) throws -> [UInt8]
}

/// Counters for what devices sent that the gateway refused or could not read.
public final class GatewayCounters: Sendable {
    private let values = Mutex<[String: Int]>([:])
    public init() {}
    public func increment(_ key: String, by amount: Int = 1) { values.withLock { $0[key, default: 0] += amount } }
    public subscript(key: String) -> Int { values.withLock { $0[key] ?? 0 } }
    public var snapshot: [String: Int] { values.withLock { $0 } }
}

/// The gateway's MQTT adapter: turns device messages into engine calls, serves chunk
/// windows, and sends offers and error replies. One instance per broker connection.
public final class MQTTGateway: DeviceNotifier, Sendable {
    public let client: MosquittoClient
    /// Topic layout and codec of the device protocol this gateway speaks.
    public let dialect: any WireDialect
    public let limits: ChunkLimits
    public let counters = GatewayCounters()
    private let flow: ChunkFlow
    private let images: any ChunkSource
    private let logger: Logger
    private let engineBox = Mutex<UpdateEngine?>(nil)

    public init(
        client: MosquittoClient, dialect: any WireDialect, limits: ChunkLimits, flow: ChunkFlowLimits = ChunkFlowLimits(),
        images: any ChunkSource, logger: Logger
    ) {
        self.client = client
        self.dialect = dialect
        self.limits = limits
        self.flow = ChunkFlow(limits: flow)
        self.images = images
        self.logger = logger
    }

    /// The engine is made with this gateway as its notifier, so it is attached after both exist.
    public func attach(_ engine: UpdateEngine) { engineBox.withLock { $0 = engine } }

    private var engine: UpdateEngine {
        guard let engine = engineBox.withLock({ $0 }) else { preconditionFailure("MQTTGateway used before attach(_:)") }
        return engine
    }

    /// Subscribes to the device topics and handles messages until the client's stream ends
    /// or the task is cancelled.
    public func run(onSubscribed: @Sendable () -> Void = {}) async throws {
        for filter in dialect.gatewaySubscriptions {
            try await client.subscribe(filter, qos: .atLeastOnce)
        }
        onSubscribed()
        logger.info("gateway subscribed", metadata: ["mqtt.filters": "\(dialect.gatewaySubscriptions)"])
        for await message in client.messages {
            await handle(topic: message.topic, payload: message.payload, retained: message.retain)
        }
    }

    /// Handles one device message. Never throws: bad input is answered, counted and logged.
    ///
    /// - Parameter retained: the retain flag on delivery: the broker replays the retained
    ///   presence and announcement when the gateway (re)subscribes, and only then sets it.
    public func handle(topic: String, payload: [UInt8], retained: Bool = false) async {
        switch dialect.decode(topic: topic, payload: payload) {
        case .failure(let failure):
            counters.increment("rejected.\(failure.error.code)")
            logger.notice(
                "refused device message",
                metadata: ["mqtt.topic": "\(topic.prefix(120))", "error.code": "\(failure.error.code)", "device.id": "\(failure.device?.rawValue ?? "-")"])
            if let device = failure.device { sendError(ErrorReply(failure.error), to: device) }
        case .success(let (device, message)):
            counters.increment("received")
            await dispatch(message, from: device, retained: retained)
        }
    }

    private func dispatch(_ message: DeviceMessage, from device: DeviceID, retained: Bool) async {
        switch message {
        case .presence(let online):
            await engine.presence(device, online: online, replayed: retained)
        case .announce(let announcement):
            // A replayed retained announce is not the device speaking: no reply to it.
            if let error = await engine.announced(device, announcement, replayed: retained), !retained {
                counters.increment("rejected.\(error.code)")
                sendError(ErrorReply(error), to: device)
            }
        case .progress(let job, let report):
            if let error = await engine.report(device, job: job, report) {
                counters.increment("rejected.\(error.code)")
                sendError(ErrorReply(error, job: job, state: report.name), to: device)
            }
        case .download(let request):
            await serve(request, to: device)
        case .pendingQuery:
            let job = await engine.activeJob(of: device)
            client.publishNoWait(
                topic: dialect.topic(.pending, of: device), payload: dialect.encode(PendingBody(job: job)), qos: .atLeastOnce)
        }
    }

    private func serve(_ request: DownloadRequest, to device: DeviceID) async {
        // Checked before the engine is asked: a flood of excess requests costs a lock each.
        guard flow.hasCredit(device) else { return refuseWindow(request, device, Self.tooManyWindows(flow.limits.windowsPerDevice)) }
        let firmware: Firmware
        switch await engine.authorizeDownload(device, job: request.job) {
        case .failure(let error):
            return refuse(error, request, device)
        case .success(let fw):
            firmware = fw
        }
        do {
            let image = try images.image(for: firmware)
            let ranges = try request.chunkRanges(imageSize: image.count, limits: limits)
            let bytes = ranges.reduce(0) { $0 + $1.count }
            switch flow.openWindow(for: device, job: request.job, bytes: bytes, imageSize: image.count) {
            case .noCredit?:
                return refuseWindow(request, device, Self.tooManyWindows(flow.limits.windowsPerDevice))
            case .allowanceSpent?:
                return refuseWindow(request, device, Self.allowanceSpent)
            case nil:
                break
            }
            // Slices share the cached image's storage: no copy before libmosquitto's own.
            let chunks = ranges.map { range in
                (topic: dialect.chunkTopic(of: device, job: request.job, offset: range.lowerBound), payload: image[range])
            }
            // Back-pressure: while the budget is spent, wait (and so read no further
            // device messages) rather than hand libmosquitto more to buffer.
            await flow.reserve(bytes)
            client.publishNoWait(chunks) { [flow, bytes] _ in flow.closeWindow(for: device, bytes: bytes) }
            counters.increment("chunks.sent", by: ranges.count)
            counters.increment("bytes.sent", by: bytes)
        } catch let error as UpdraftError {
            refuse(error, request, device)
        } catch {
            refuse(UpdraftError("image_unavailable", "The gateway cannot read the image right now; retry later."), request, device)
            logger.error("image read failed", metadata: ["firmware.id": "\(firmware.id)", "error": "\(error)"])
        }
    }

    static func tooManyWindows(_ limit: Int) -> UpdraftError {
        UpdraftError(
            "too_many_windows",
            "At most \(limit) download windows may be in flight per device; ask for the next window once the chunks of an earlier one arrived (or after your request timeout).")
    }

    static let allowanceSpent = UpdraftError(
        "download_allowance",
        "This device was sent twice its image for this job within a minute; ask only for the chunks you lack, and wait a few seconds before asking again (one image's worth comes back per minute).")

    /// A window refused for its credit or allowance is answered once until one of the
    /// device's windows closes; the rest are dropped (an answer costs more than a request).
    private func refuseWindow(_ request: DownloadRequest, _ device: DeviceID, _ error: UpdraftError) {
        guard flow.answerRefusal(for: device) else { return counters.increment("rejected.\(error.code)") }
        refuse(error, request, device)
    }

    /// Chunk bytes handed to libmosquitto and not yet written.
    public var chunkBytesInFlight: Int { flow.bytesInFlight }

    private func refuse(_ error: UpdraftError, _ request: DownloadRequest, _ device: DeviceID) {
        counters.increment("rejected.\(error.code)")
        sendError(ErrorReply(error, job: request.job, offset: request.offset), to: device)
    }

    private func sendError(_ reply: ErrorReply, to device: DeviceID) {
        client.publishNoWait(topic: dialect.topic(.error, of: device), payload: dialect.encode(reply), qos: .atLeastOnce, retain: false)
    }

    // MARK: DeviceNotifier

    public func offer(_ job: Job, firmware: Firmware, to device: DeviceID) {
        let offer = JobOffer(job: job, firmware: firmware, limits: limits)
        counters.increment("offers.sent")
        client.publishNoWait(topic: dialect.topic(.job, of: device), payload: dialect.encode(offer), qos: .atLeastOnce, retain: false)
    }
}
