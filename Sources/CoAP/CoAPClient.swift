import Logging
import LoopSupport

/// A CoAP client over libcoap 4.3.1: one libcoap context on an event loop
/// thread, hosting any number of sessions (one per server and set of credentials).
///
/// ```swift
/// let client = CoAPClient(logger: logger)
/// let session = try await client.session(host: "gw.local", port: 5684,
///                                        security: .psk(identity: "device-42", key: key))
/// let image = try await session.get("fw/image", blockSize: 512)   // Block2, reassembled
/// let ack = try await session.post("status", payload: report)
/// for try await notification in session.observe("jobs") { ... }
/// client.shutdown()
/// ```
///
/// Block-wise transfers (Block1 uploads, Block2 downloads, large notifications)
/// are done by libcoap and the caller sees whole bodies, unless the client is made
/// with ``BlockTransfers/byCaller``: then a GET asks for one block
/// (``CoAPClientSession/getBlock(_:number:size:query:timeout:)``) and its response
/// carries the block's number (``CoAPClientResponse/block2``), which lets a device
/// resume a download at the block where it stopped.
public final class CoAPClient: Sendable {
    /// Who splits and reassembles bodies larger than one datagram.
    public enum BlockTransfers: Sendable {
        /// libcoap: requests and responses are whole bodies.
        case byLibcoap
        /// The caller: one block per request and response, no reassembly.
        case byCaller
    }

    public struct Configuration: Sendable {
        /// Default time a request may take until its response (all blocks) arrived.
        public var requestTimeout: Duration
        public var blockTransfers: BlockTransfers

        public init(requestTimeout: Duration = .seconds(60), blockTransfers: BlockTransfers = .byLibcoap) {
            (self.requestTimeout, self.blockTransfers) = (requestTimeout, blockTransfers)
        }
    }

    /// How a session authenticates.
    public enum Security: Sendable {
        /// Plain UDP (`coap://`).
        case none
        /// DTLS with a pre-shared key (`coaps://`); the key is 1...64 bytes.
        case psk(identity: String, key: [UInt8])
    }

    public let configuration: Configuration
    public let loop: CoAPEventLoop
    private let ownsLoop: Bool
    let core: ClientCore
    private let references: LibcoapReferences

    /// - Parameters:
    ///   - loop: the event loop to run on; `nil` starts one of the client's own,
    ///     ended by ``shutdown()``.
    ///   - logger: the client's logs, and libcoap's when the loop is its own.
    public init(configuration: Configuration = .init(), loop: CoAPEventLoop? = nil, logger: Logger) {
        let references = LibcoapReferences()
        let eventLoop = loop ?? CoAPEventLoop(name: "coap-client", logger: logger)
        self.configuration = configuration
        self.loop = eventLoop
        self.ownsLoop = loop == nil
        self.references = references
        self.core = ClientCore(
            logger: logger, references: references, loop: eventLoop, blockTransfers: configuration.blockTransfers)
    }

    deinit {
        shutdown()
    }

    /// `Unmanaged` references libcoap holds (context, payloads in flight); 0 after ``shutdown()``.
    package var libcoapReferenceCount: Int { references.value }

    /// Creates a session to `host`:`port`. Nothing is sent yet; a DTLS session
    /// starts its handshake at once, and requests wait for it.
    /// - Throws: ``CoAPError`` `.resolveFailed`, `.invalidArgument`, `.dtlsUnavailable`, `.notRunning`.
    public func session(host: String, port: Int, security: Security = .none) async throws -> CoAPClientSession {
        if case .psk(let identity, let key) = security {
            guard !identity.isEmpty, (1...ClientCore.maxPSKLength).contains(key.count) else {
                throw CoAPError.invalid("session", "a PSK needs a non-empty identity and a key of 1...64 bytes")
            }
        }
        let endpoint = try await ResolvedEndpoint.resolveAsync(
            host, port: port, secure: security.isSecure, operation: "session")
        let description = "\(host):\(port)"
        let id = core.makeID()
        let completion = Completion<Void>()
        let core = self.core
        guard loop.execute({ core.openSession(id, endpoint: endpoint, security: security, completion) }) else {
            throw CoAPError.notRunning("session", "the client's event loop \(loop.name) is shut down")
        }
        try await completion.wait()
        return CoAPClientSession(client: self, id: id, description: description)
    }

    /// Closes every session (pending requests fail, observations end), frees
    /// the libcoap context and, if the loop is the client's own, ends its
    /// thread. Idempotent.
    public func shutdown() {
        let core = self.core
        if loop.isCurrentThread {
            loop.execute { core.close() }
        } else {
            _ = loop.executeAndWait { core.close() }
        }
        if ownsLoop {
            loop.shutdown()
        }
    }
}

extension CoAPClient.Security {
    var isSecure: Bool {
        if case .psk = self { true } else { false }
    }
}

/// A request as the client sends it.
public struct CoAPClientRequest: Sendable {
    public var method: CoAPMethod
    /// Resource path, e.g. `"fw/image"`; sent as Uri-Path options.
    public var path: String
    /// Uri-Query options, e.g. `["v=2"]`.
    public var query: [String]
    /// Sent block-wise (Block1) by libcoap when larger than one datagram.
    public var payload: [UInt8]
    public var contentFormat: CoAPContentFormat?
    public var accept: CoAPContentFormat?
    /// Block size to ask for (Block2) and to upload with (Block1): 16, 32, ..., 1024.
    /// `nil` lets the server (downloads) and libcoap (uploads) choose.
    public var blockSize: Int?
    /// The Block2 number to ask for (with `blockSize`); above 0 only for a client whose
    /// blocks are transferred ``CoAPClient/BlockTransfers/byCaller``.
    public var blockNumber: Int = 0
    /// CON (acknowledged and retransmitted) or NON.
    public var confirmable: Bool

    public init(
        method: CoAPMethod, path: String, query: [String] = [], payload: [UInt8] = [],
        contentFormat: CoAPContentFormat? = nil, accept: CoAPContentFormat? = nil, blockSize: Int? = nil,
        confirmable: Bool = true
    ) {
        (self.method, self.path, self.query, self.payload) = (method, path, query, payload)
        (self.contentFormat, self.accept, self.blockSize) = (contentFormat, accept, blockSize)
        self.confirmable = confirmable
    }

    func validate(_ operation: String) throws(CoAPError) {
        if let blockSize, BlockSize.szx(blockSize) == nil {
            throw .invalid(operation, "block size \(blockSize) is not one of 16, 32, 64, 128, 256, 512, 1024")
        }
        guard (0..<(1 << 20)).contains(blockNumber), blockNumber == 0 || blockSize != nil else {
            throw .invalid(operation, "block number \(blockNumber) needs a block size and must be below 2^20")
        }
        let segments = path.split(separator: "/")
        guard segments.allSatisfy({ $0.utf8.count <= 255 }), query.allSatisfy({ $0.utf8.count <= 255 }) else {
            throw .invalid(operation, "a path segment or query item is longer than 255 bytes; shorten it")
        }
    }
}

/// A response as the client receives it, body reassembled.
public struct CoAPClientResponse: Sendable {
    public var code: CoAPResponseCode
    public var payload: [UInt8]
    public var contentFormat: CoAPContentFormat?
    public var etag: [UInt8]?
    /// Size2 (total body size) when the server sent it.
    public var size2: Int?
    public var maxAge: UInt32?
    /// The Observe sequence number of a notification or registration response.
    public var observe: UInt32?
    /// Location-Path of a created resource.
    public var locationPath: String?
    /// The response's Block2 option: which block `payload` is. Only a client whose
    /// blocks are transferred ``CoAPClient/BlockTransfers/byCaller`` sees it.
    public var block2: CoAPBlock?

    public init(
        code: CoAPResponseCode, payload: [UInt8] = [], contentFormat: CoAPContentFormat? = nil, etag: [UInt8]? = nil,
        size2: Int? = nil, maxAge: UInt32? = nil, observe: UInt32? = nil, locationPath: String? = nil,
        block2: CoAPBlock? = nil
    ) {
        (self.block2, self.code, self.payload, self.contentFormat) = (block2, code, payload, contentFormat)
        (self.etag, self.size2, self.maxAge, self.observe) = (etag, size2, maxAge, observe)
        self.locationPath = locationPath
    }

    /// The ETag as libcoap's servers encode a 64-bit value (big-endian).
    public var etagValue: UInt64? {
        etag.map(PDU.decode)
    }
}

/// One peer and set of credentials of a ``CoAPClient``. Many sessions share
/// the client's loop. Dropping the last reference closes it.
///
/// A DTLS session that failed or was closed by the server reconnects (new
/// handshake) on the next request.
public final class CoAPClientSession: Sendable {
    public let client: CoAPClient
    /// `host:port` as given.
    public let remote: String
    let id: UInt64

    init(client: CoAPClient, id: UInt64, description: String) {
        self.client = client
        self.id = id
        self.remote = description
    }

    deinit {
        close()
    }

    /// Sends `request` and returns the response, body reassembled. A response
    /// code other than 2.xx is a response, not an error.
    /// - Throws: ``CoAPError`` `.timeout`, `.sessionFailed` (DTLS handshake:
    ///   wrong identity or key), `.sendFailed`, `.notRunning`; `CancellationError`.
    public func request(_ request: CoAPClientRequest, timeout: Duration? = nil) async throws -> CoAPClientResponse {
        let operation = "\(request.method) \(request.path)"
        try request.validate(operation)
        guard request.blockNumber == 0 || client.configuration.blockTransfers == .byCaller else {
            throw CoAPError.invalid(operation, "a block number above 0 needs a CoAPClient made with blockTransfers: .byCaller")
        }
        let core = client.core
        let loop = client.loop
        let exchange = core.makeID()
        let completion = Completion<CoAPClientResponse>()
        let session = id
        let timeout = timeout ?? client.configuration.requestTimeout
        guard loop.execute({
            core.start(request, exchange: exchange, session: session, waiter: .single(completion), timeout: timeout)
        }) else {
            throw CoAPError.notRunning(operation, "the client is shut down")
        }
        return try await completion.wait(onCancel: { loop.execute { core.abandon(exchange) } })
    }

    /// GET; `blockSize` asks the server for blocks of that size (Block2).
    public func get(
        _ path: String, query: [String] = [], accept: CoAPContentFormat? = nil, blockSize: Int? = nil,
        timeout: Duration? = nil
    ) async throws -> CoAPClientResponse {
        try await request(
            CoAPClientRequest(method: .get, path: path, query: query, accept: accept, blockSize: blockSize),
            timeout: timeout)
    }

    /// GET block `number` of `size` bytes of `path` (Block2, RFC 7959): one request, one
    /// block. Needs a client whose blocks are transferred ``CoAPClient/BlockTransfers/byCaller``.
    public func getBlock(
        _ path: String, number: Int, size: Int, query: [String] = [], timeout: Duration? = nil
    ) async throws -> CoAPClientResponse {
        guard client.configuration.blockTransfers == .byCaller else {
            throw CoAPError.invalid("GET \(path)", "getBlock needs a CoAPClient made with blockTransfers: .byCaller")
        }
        var request = CoAPClientRequest(method: .get, path: path, query: query, blockSize: size)
        request.blockNumber = number
        return try await self.request(request, timeout: timeout)
    }

    /// POST `payload` (sent block-wise when large).
    public func post(
        _ path: String, payload: [UInt8], contentFormat: CoAPContentFormat = .octetStream, query: [String] = [],
        timeout: Duration? = nil
    ) async throws -> CoAPClientResponse {
        try await send(.post, path, payload, contentFormat, query, timeout)
    }

    /// PUT `payload` (sent block-wise when large).
    public func put(
        _ path: String, payload: [UInt8], contentFormat: CoAPContentFormat = .octetStream, query: [String] = [],
        timeout: Duration? = nil
    ) async throws -> CoAPClientResponse {
        try await send(.put, path, payload, contentFormat, query, timeout)
    }

    private func send(
        _ method: CoAPMethod, _ path: String, _ payload: [UInt8], _ contentFormat: CoAPContentFormat, _ query: [String],
        _ timeout: Duration?
    ) async throws -> CoAPClientResponse {
        try await request(
            CoAPClientRequest(method: method, path: path, query: query, payload: payload, contentFormat: contentFormat),
            timeout: timeout)
    }

    /// Observes a resource (RFC 7641): the first element is the current
    /// representation, then one per notification. Ends after the first element
    /// when the server answers other than 2.xx or does not accept the
    /// observation. Fails with ``CoAPError``: `.timeout` when the first
    /// response does not come, `.sessionFailed`, `.notRunning` once the
    /// session or client is closed. Stopping the iteration (or cancelling its
    /// task) cancels the observation at the server.
    public func observe(
        _ path: String, query: [String] = [], accept: CoAPContentFormat? = nil, blockSize: Int? = nil,
        timeout: Duration? = nil
    ) -> AsyncThrowingStream<CoAPClientResponse, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(
            of: CoAPClientResponse.self, bufferingPolicy: .bufferingNewest(64))
        let request = CoAPClientRequest(method: .get, path: path, query: query, accept: accept, blockSize: blockSize)
        do {
            try request.validate("observe \(path)")
        } catch {
            continuation.finish(throwing: error)
            return stream
        }
        let core = client.core
        let loop = client.loop
        let exchange = core.makeID()
        let session = id
        let timeout = timeout ?? client.configuration.requestTimeout
        let sink = ObservationSink(continuation)
        continuation.onTermination = { termination in
            // `.finished` comes from the loop, which already forgot the exchange.
            guard case .cancelled = termination else { return }
            sink.markTerminated()
            loop.execute { core.abandon(exchange) }
        }
        let accepted = loop.execute {
            core.start(request, exchange: exchange, session: session, waiter: .observation(sink), timeout: timeout)
        }
        if !accepted {
            continuation.finish(throwing: CoAPError.notRunning("observe \(path)", "the client is shut down"))
        }
        return stream
    }

    /// Ends the session: pending requests fail, observations end (libcoap
    /// tells the server). Idempotent; also done when the session is released.
    public func close() {
        let core = client.core
        let session = id
        client.loop.execute { core.closeSession(session) }
    }
}
