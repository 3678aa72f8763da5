import CoAP
import Foundation
import Logging
import Synchronization
import UpdraftAdapter
import UpdraftCore
import UpdraftWire

/// The CoAP device API: translates requests to engine calls and job offers to
/// resources. Same engine, same state machine, same JSON bodies as MQTT; only the
/// framing differs (see the DocC article "CoAP device API").
///
/// Resources (the device is the DTLS PSK identity or client certificate CN, or `?d=<id>`
/// when plain CoAP is allowed):
/// - `POST announce` — the announce body; answers the pending job (like `GET job/<id>`).
/// - `GET job/<id>` — the pending job offer or `{}`; observable, so an observer is pushed a
///   new job at once.
/// - `POST progress` — the progress body; 2.04, or 4.00 / 4.03 / 4.09 with an error body.
/// - `GET pending` — `{"pending":true,"job":...}` or `{"pending":false}`, even while the
///   device declines updates.
/// - `GET fw/<key>` — the image, Block2 at any size 16...1024, Size2, ETag from its SHA-256;
///   every block request is checked against the device's current offer.
public final class CoAPGateway: DeviceAdapter, Sendable {
    public struct Settings: Sendable {
        /// Accept `?d=<device id>` from peers without a DTLS identity (plain `coap://`).
        /// Off in production: anyone could speak for any device.
        public var allowUnauthenticated: Bool
        /// Silence after which a device that announced no `lifetime` is taken for offline.
        public var defaultLifetime: Duration
        /// How often ``watchPresence()`` looks for devices silent past their lifetime.
        public var presenceCheckInterval: Duration

        public init(
            allowUnauthenticated: Bool = false, defaultLifetime: Duration = .seconds(86_400),
            presenceCheckInterval: Duration = .seconds(1)
        ) {
            self.allowUnauthenticated = allowUnauthenticated
            self.defaultLifetime = defaultLifetime
            self.presenceCheckInterval = presenceCheckInterval
        }
    }

    /// When a device last spoke, and how long it may stay silent.
    private struct Heard: Sendable {
        var at: ContinuousClock.Instant
        var lifetime: Duration
    }

    /// What a device is offered right now, kept for the loop thread's immediate handlers.
    private struct Offer: Sendable {
        var job: JobID
        var firmwareKey: String
        var body: [UInt8]
        /// To sign a fresh download URL at each GET (when HTTP downloads are on).
        var offered: (job: Job, firmware: Firmware)
    }

    private struct Image: Sendable {
        var payload: CoAPPayload
        var etag: UInt64
    }

    private struct State {
        var offers: [DeviceID: Offer] = [:]
        var jobResources: Set<DeviceID> = []
        var images: [String: Image] = [:]
        /// Devices online over CoAP, for ``watchPresence()``.
        var heard: [DeviceID: Heard] = [:]
    }

    public let server: CoAPServer
    public var transport: Transport { .coap }
    private let settings: Settings
    private let pipeline: DevicePipeline
    private let logger: Logger
    private let state = Mutex(State())

    /// Registers with the router: commands for CoAP devices come here.
    /// - Parameter images: the image bytes of a firmware (from the in-memory cache).
    public init(
        server: CoAPServer, settings: Settings = .init(), engine: UpdateEngine, router: DeviceCommandRouter,
        images: any FirmwareImageSource, links: DownloadLinks? = nil, logger: Logger
    ) throws {
        self.server = server
        self.settings = settings
        self.pipeline = DevicePipeline(transport: .coap, engine: engine, router: router, images: images, links: links, logger: logger)
        self.logger = logger
        try addResources()
        pipeline.serve(self)
    }

    /// Requests answered per outcome ("announce", "rejected.<code>", ...).
    public var counters: GatewayCounters { pipeline.counters }

    // MARK: Resources

    private func addResources() throws {
        try server.addResource(
            CoAPResource(path: "announce", handlers: [.post: .deferred { [self] in try await identified($0, announce) }]))
        try server.addResource(
            CoAPResource(path: "progress", handlers: [.post: .deferred { [self] in try await identified($0, progress) }]))
        try server.addResource(
            CoAPResource(path: "pending", handlers: [.get: .deferred { [self] in try await identified($0, pending) }]))
    }

    /// Answers for the device the request speaks for, or with the refusal of its identity.
    private func identified(
        _ request: CoAPRequest, _ handler: (CoAPRequest, DeviceID) async throws -> CoAPResponse
    ) async throws -> CoAPResponse {
        switch identify(request) {
        case .refused(let refusal): refusal
        case .device(let id): try await handler(request, id)
        }
    }

    /// "Is an update pending for me?", also while the device declines updates.
    private func pending(_ request: CoAPRequest, _ id: DeviceID) async throws -> CoAPResponse {
        count("pending")
        return CoAPResponse(
            code: .content, payload: WireJSON.encode(await pipeline.pending(of: id)), contentFormat: .json)
    }

    private func announce(_ request: CoAPRequest, _ id: DeviceID) async throws -> CoAPResponse {
        let body: AnnounceBody
        do throws(UpdraftError) {
            body = try pipeline.decode(
                request.payload, "announce", example: #"{"product":"thermo","version":"1.0.0","accepts_updates":true}"#
            ).get()
        } catch {
            return refuse(.badRequest, error)
        }
        if let lifetime = body.lifetime, !AnnounceBody.lifetimes.contains(lifetime) {
            return refuse(
                .badRequest,
                UpdraftError(
                    "malformed_announce",
                    "lifetime \(lifetime) is out of range: give 1...\(AnnounceBody.lifetimes.upperBound) seconds, or leave it out for the gateway's default."
                ))
        }
        try ensureJobResource(for: id)
        let lifetime = body.lifetime.map { Duration.seconds($0) } ?? settings.defaultLifetime
        state.withLock { $0.heard[id] = Heard(at: .now, lifetime: lifetime) }
        if let refusal = await pipeline.announced(id, body.announcement) {
            // `unavailable`: the store cannot be written; `rate_limited`: over the device's event
            // budget; `device_revoked`: the operator revoked it (a DTLS session outlives its key).
            return answer(Self.status(of: refusal), refusal)
        }
        count("announce")
        return jobRepresentation(of: id, code: .changed)
    }

    private func progress(_ request: CoAPRequest, _ id: DeviceID) async throws -> CoAPResponse {
        let report: DeviceReport
        let body: ProgressBody
        do throws(UpdraftError) {
            body = try pipeline.decode(
                request.payload, "progress", example: #"{"job":"j0123456789abcdef","state":"downloading","percent":40}"#
            ).get()
            report = try body.report()
        } catch {
            return refuse(.badRequest, error)
        }
        if let refusal = await pipeline.report(id, job: body.job, report) {
            return answer(Self.status(of: refusal), refusal, job: body.job)
        }
        count("progress")
        return CoAPResponse(code: .changed)
    }

    /// `job/<id>`: observable, so its GET is immediate (on the loop thread, from memory).
    private func ensureJobResource(for id: DeviceID) throws {
        let isNew = state.withLock { $0.jobResources.insert(id).inserted }
        guard isNew else { return }
        do {
            try server.addResource(
                CoAPResource(
                    path: "job/\(id.rawValue)", observable: true,
                    handlers: [.get: .immediate { [self] request in jobGET(request, device: id) }]))
        } catch {
            state.withLock { _ = $0.jobResources.remove(id) }
            throw error
        }
    }

    private func jobGET(_ request: CoAPRequest, device: DeviceID) -> CoAPResponse {
        if case .refused(let refusal) = identify(request, expected: device) { return refusal }
        return jobRepresentation(of: device, code: .content)
    }

    private func jobRepresentation(of id: DeviceID, code: CoAPResponseCode) -> CoAPResponse {
        guard let offer = state.withLock({ $0.offers[id] }) else { return CoAPResponse(code: code, payload: Array("{}".utf8), contentFormat: .json) }
        // A signed URL expires: each answer carries one made now.
        let body =
            pipeline.links == nil
            ? offer.body
            : WireJSON.encode(pipeline.offer(offer.offered.job, firmware: offer.offered.firmware, to: id, download: "fw/\(offer.firmwareKey)"))
        return CoAPResponse(code: code, payload: body, contentFormat: .json)
    }

    /// `fw/<key>`: immediate, from the shared payload; the server cuts the block asked for,
    /// so every block is allowed (or refused) by the offer as it stands now.
    private func firmwareGET(_ request: CoAPRequest, key: String) -> CoAPResponse {
        let id: DeviceID
        switch identify(request) {
        case .refused(let refusal): return refusal
        case .device(let device): id = device
        }
        let (offer, image) = state.withLock { ($0.offers[id], $0.images[key]) }
        guard let image, let offer, offer.firmwareKey == key else {
            count("rejected.not_your_job")
            return .status(.forbidden, diagnostic: "not_your_job: this image is not part of your pending job; GET job/\(id.rawValue)")
        }
        count("firmware")
        var response = CoAPResponse(code: .content, payload: image.payload, contentFormat: .octetStream, etag: image.etag)
        let pipeline = pipeline
        response.sent = { pipeline.count("bytes.sent", by: $0) }
        return response
    }

    // MARK: Presence

    /// Takes CoAP devices that stayed silent past their lifetime (announced, or
    /// ``Settings/defaultLifetime``) for offline, until they announce again; any request
    /// of a device counts as hearing from it. Runs until cancelled. Devices the registry
    /// had online over CoAP before a restart get a full lifetime from the start.
    public func watchPresence() async {
        var seeded = false
        while !Task.isCancelled {
            do { try await Task.sleep(for: settings.presenceCheckInterval) } catch { return }
            if !seeded {
                seeded = true
                let start = ContinuousClock.now
                for id in await pipeline.engine.onlineDevices(via: .coap) {
                    state.withLock { state in
                        if state.heard[id] == nil { state.heard[id] = Heard(at: start, lifetime: settings.defaultLifetime) }
                    }
                }
            }
            let now = ContinuousClock.now
            let silent: [(DeviceID, Duration)] = state.withLock { state in
                let expired = state.heard.filter { $0.value.at + $0.value.lifetime <= now }.map { ($0.key, now - $0.value.at) }
                for (id, _) in expired { state.heard[id] = nil }
                return expired
            }
            for (id, quiet) in silent {
                logger.info("CoAP device silent past its lifetime; taken for offline", metadata: ["device.id": "\(id)"])
                count("offline.silent")
                await pipeline.presence(id, online: false, silentFor: quiet)
            }
        }
    }

    private func heard(_ id: DeviceID) {
        state.withLock { state in
            if state.heard[id] != nil { state.heard[id]?.at = .now }
        }
    }

    // MARK: Identity

    private enum Identity {
        case device(DeviceID)
        case refused(CoAPResponse)
    }

    /// The device a request speaks for: its DTLS PSK identity or certificate CN, else
    /// (when allowed) `?d=`.
    private func identify(_ request: CoAPRequest, expected: DeviceID? = nil) -> Identity {
        let claimed = request.queryValue("d")
        let raw: String
        if let identity = request.pskIdentity ?? request.certificateName {
            if let claimed, claimed != identity {
                count("rejected.identity_mismatch")
                return .refused(.status(.forbidden, diagnostic: "identity_mismatch: you are \(identity) (DTLS), not \(claimed)"))
            }
            raw = identity
        } else if settings.allowUnauthenticated, let claimed {
            raw = claimed
        } else {
            count("rejected.unauthenticated")
            return .refused(
                .status(
                    .unauthorized,
                    diagnostic: settings.allowUnauthenticated
                        ? "unauthenticated: add ?d=<device id>, or use coaps:// with your PSK"
                        : "unauthenticated: use coaps:// with your device id as PSK identity or certificate CN"))
        }
        let id: DeviceID
        switch pipeline.identify(raw) {
        case .failure(let error): return .refused(.status(.badRequest, diagnostic: "\(error.code): \(error.message)"))
        case .success(let device): id = device
        }
        if let expected, expected != id {
            count("rejected.not_your_job")
            return .refused(.status(.forbidden, diagnostic: "not_your_job: job/\(expected.rawValue) belongs to another device"))
        }
        heard(id)
        return .device(id)
    }

    /// Refuses what the gateway itself found wrong (counted here), with an error body.
    private func refuse(_ code: CoAPResponseCode, _ error: UpdraftError, job: JobID? = nil) -> CoAPResponse {
        pipeline.count(error)
        return answer(code, error, job: job)
    }

    /// The error body for a refusal already counted (the engine's, through the pipeline).
    private func answer(_ code: CoAPResponseCode, _ error: UpdraftError, job: JobID? = nil) -> CoAPResponse {
        logger.notice("refused CoAP request", metadata: ["error.code": "\(error.code)"])
        // RFC 8516: Max-Age says when to try again; a device's budget refills within a minute.
        return CoAPResponse(
            code: code, payload: WireJSON.encode(ErrorReply(error, job: job)), contentFormat: .json,
            maxAge: code == .tooManyRequests ? 60 : nil)
    }

    /// The answer to a refused report: 5.03 while the store cannot be written (send the
    /// same report again), 4.29 over the device's event budget, 4.03 for another
    /// device's job or a revoked device, else 4.09.
    static func status(of refusal: UpdraftError) -> CoAPResponseCode {
        switch refusal.code {
        case "unavailable": .serviceUnavailable
        case "rate_limited": .tooManyRequests
        case "not_your_job", "device_revoked": .forbidden
        default: .conflict
        }
    }

    private func count(_ key: String) { pipeline.count(key) }

    // MARK: Offers

    /// Keeps an offer for the device to GET (and pushes it to observers), or drops a
    /// withdrawn one.
    public func deliver(_ command: DeviceCommand) {
        switch command.action {
        case .offer(let job, let firmware): offer(job, firmware: firmware, to: command.device)
        case .withdraw(let job): withdraw(job, from: command.device)
        }
    }

    private func withdraw(_ job: JobID, from device: DeviceID) {
        let dropped = state.withLock { state -> Bool in
            guard let offer = state.offers[device], offer.job == job else { return false }
            state.offers[device] = nil
            return true
        }
        if dropped { server.notifyObservers(path: "job/\(device.rawValue)") }
    }

    private func offer(_ job: Job, firmware: Firmware, to device: DeviceID) {
        let key = String(firmware.sha256.prefix(16))
        do {
            try ensureImage(firmware, key: key)
            try ensureJobResource(for: device)
        } catch {
            logger.error("cannot offer over CoAP", metadata: ["job.id": "\(job.id)", "error": "\(error)"])
            return
        }
        let body = WireJSON.encode(pipeline.offer(job, firmware: firmware, to: device, download: "fw/\(key)"))
        state.withLock { state in
            state.offers[device] = Offer(job: job.id, firmwareKey: key, body: body, offered: (job, firmware))
        }
        count("offers.sent")
        server.notifyObservers(path: "job/\(device.rawValue)")
    }

    /// Makes `fw/<key>` from the cached image. The ETag is the first 8 bytes of the
    /// catalog's SHA-256: the image was hashed when it entered the catalog, not here.
    private func ensureImage(_ firmware: Firmware, key: String) throws {
        if state.withLock({ $0.images[key] != nil }) { return }
        let bytes = try pipeline.images.image(for: firmware)
        let image = Image(payload: CoAPPayload(bytes), etag: UInt64(firmware.sha256.prefix(16), radix: 16) ?? 0)
        let isNew = state.withLock { state -> Bool in
            guard state.images[key] == nil else { return false }
            state.images[key] = image
            return true
        }
        if isNew {
            try server.addResource(
                CoAPResource(path: "fw/\(key)", handlers: [.get: .immediate { [self] in firmwareGET($0, key: key) }]))
        }
    }
}
