import Foundation
import Logging
import Mosquitto
import UpdraftAdapter
import UpdraftCore
import UpdraftWire

/// The gateway's MQTT adapter: turns device messages into engine calls (through its
/// ``DevicePipeline``), serves chunk windows, and publishes offers and error replies.
/// One instance per broker connection.
public final class MQTTGateway: DeviceAdapter, Sendable {
    public let client: MosquittoClient
    /// Topic layout and codec of the device protocol this gateway speaks.
    public let dialect: any WireDialect
    public let limits: ChunkLimits
    public var counters: GatewayCounters { pipeline.counters }
    public var transport: Transport { .mqtt }
    private let flow: ChunkFlow
    private let pipeline: DevicePipeline
    private let logger: Logger

    /// Registers with the router: commands for MQTT devices (and for any device whose
    /// transport has no adapter) come here.
    public init(
        client: MosquittoClient, dialect: any WireDialect, limits: ChunkLimits, flow: ChunkFlowLimits = ChunkFlowLimits(),
        engine: UpdateEngine, router: DeviceCommandRouter, images: any FirmwareImageSource, links: DownloadLinks? = nil,
        logger: Logger
    ) {
        self.client = client
        self.dialect = dialect
        self.limits = limits
        self.flow = ChunkFlow(limits: flow)
        self.pipeline = DevicePipeline(transport: .mqtt, engine: engine, router: router, images: images, links: links, logger: logger)
        self.logger = logger
        pipeline.serve(self)
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
            pipeline.refuse(failure.error, device: failure.device, metadata: ["mqtt.topic": "\(topic.prefix(120))"])
            if let device = failure.device { sendError(ErrorReply(failure.error), to: device) }
        case .success(let (device, message)):
            pipeline.count("received")
            await dispatch(message, from: device, retained: retained)
        }
    }

    private func dispatch(_ message: DeviceMessage, from device: DeviceID, retained: Bool) async {
        switch message {
        case .presence(let online):
            await pipeline.presence(device, online: online, replayed: retained)
        case .announce(let announcement):
            // A replayed retained announce is not the device speaking: no reply to it.
            if let error = await pipeline.announced(device, announcement, replayed: retained), !retained {
                sendError(ErrorReply(error), to: device)
            }
        case .progress(let job, let report):
            if let error = await pipeline.report(device, job: job, report) {
                sendError(ErrorReply(error, job: job, state: report.name), to: device)
            }
        case .download(let request):
            await serve(request, to: device)
        case .pendingQuery:
            let pending = await pipeline.pending(of: device)
            client.publishNoWait(topic: dialect.topic(.pending, of: device), payload: dialect.encode(pending), qos: .atLeastOnce)
        }
    }

    private func serve(_ request: DownloadRequest, to device: DeviceID) async {
        // Checked before the engine is asked: a flood of excess requests costs a lock each.
        guard flow.hasCredit(device) else { return refuseWindow(request, device, Self.tooManyWindows(flow.limits.windowsPerDevice)) }
        let image: [UInt8]
        switch await pipeline.download(device, job: request.job) {
        case .failure(let error):
            return answer(error, request, device)
        case .success(let download):
            image = download.image
        }
        do throws(UpdraftError) {
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
            pipeline.count("chunks.sent", by: ranges.count)
            pipeline.count("bytes.sent", by: bytes)
        } catch {
            pipeline.count(error)
            answer(error, request, device)
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
        pipeline.count(error)
        guard flow.answerRefusal(for: device) else { return }
        answer(error, request, device)
    }

    /// Chunk bytes handed to libmosquitto and not yet written.
    public var chunkBytesInFlight: Int { flow.bytesInFlight }

    /// Sends the refusal of a download request (counted by whoever refused it).
    private func answer(_ error: UpdraftError, _ request: DownloadRequest, _ device: DeviceID) {
        sendError(ErrorReply(error, job: request.job, offset: request.offset), to: device)
    }

    private func sendError(_ reply: ErrorReply, to device: DeviceID) {
        client.publishNoWait(topic: dialect.topic(.error, of: device), payload: dialect.encode(reply), qos: .atLeastOnce, retain: false)
    }

    // MARK: DeviceAdapter

    /// Publishes an offer (QoS 1, not retained). A withdrawal sends nothing: a pushed offer
    /// has nothing to take back.
    public func deliver(_ command: DeviceCommand) {
        guard case .offer(let job, let firmware) = command.action else { return }
        let offer = pipeline.offer(job, firmware: firmware, to: command.device, limits: limits)
        pipeline.count("offers.sent")
        client.publishNoWait(
            topic: dialect.topic(.job, of: command.device), payload: dialect.encode(offer), qos: .atLeastOnce, retain: false)
    }
}
