import Logging
import Synchronization

/// A CoAP server endpoint over libcoap 4.3.1: UDP (`coap://`) and DTLS with
/// per-device pre-shared keys (`coaps://`).
///
/// ```swift
/// let server = CoAPServer(configuration: .init(host: "0.0.0.0", port: 5683), logger: logger)
/// try server.addResource(CoAPResource(path: "fw/image", handlers: [
///     .get: .immediate { _ in CoAPResponse(payload: image) },
/// ]))
/// try server.start()
/// ...
/// server.stop()
/// ```
///
/// libcoap runs on one event loop thread (its own, unless one is passed in);
/// handlers are ``CoAPHandler/immediate(_:)`` closures on that thread or
/// ``CoAPHandler/deferred(_:)`` async functions answered separately.
public final class CoAPServer: Sendable {
    public struct Configuration: Sendable {
        /// Address to listen on: `"0.0.0.0"`, `"::"`, `"127.0.0.1"` or a local name.
        public var host: String
        /// UDP port for `coap://`; `nil` disables plain CoAP.
        public var port: Int?
        /// UDP port for `coaps://` (DTLS); needs ``psk``, ``pki`` or both. `nil` disables DTLS.
        public var securePort: Int?
        /// Pre-shared keys for DTLS.
        public var psk: PSK?
        /// Certificates for DTLS: clients present one signed by the CA.
        public var pki: PKI?
        /// How long a ``CoAPHandler/deferred(_:)`` handler may take before the
        /// request is answered 5.03 and the handler's task cancelled.
        public var handlerTimeout: Duration
        /// Deferred requests in flight before new ones are answered 5.03 at once.
        public var maxDeferredRequests: Int
        /// DTLS peers past the cookie exchange (their address answered) that may be
        /// mid-handshake at once; new peers wait while it is reached. A first ClientHello
        /// leaves no state (its hello session is freed as soon as it is answered), so
        /// spoofed ClientHellos cannot use these up.
        public var maxHandshakes: Int
        /// How long a DTLS handshake past the cookie exchange may take before its session
        /// is dropped (libcoap 4.3.1 keeps it 30 s).
        public var handshakeTimeout: Duration

        /// - Parameters:
        ///   - host: defaults to all IPv4 interfaces.
        ///   - port: defaults to 5683; `nil` for DTLS only.
        ///   - securePort: e.g. 5684; requires `psk`.
        public init(
            host: String = "0.0.0.0", port: Int? = 5683, securePort: Int? = nil, psk: PSK? = nil,
            handlerTimeout: Duration = .seconds(30), maxDeferredRequests: Int = 1024, maxHandshakes: Int = 100,
            handshakeTimeout: Duration = .seconds(10)
        ) {
            (self.host, self.port, self.securePort, self.psk) = (host, port, securePort, psk)
            (self.handlerTimeout, self.maxDeferredRequests) = (handlerTimeout, maxDeferredRequests)
            (self.maxHandshakes, self.handshakeTimeout) = (maxHandshakes, handshakeTimeout)
        }
    }

    /// DTLS pre-shared keys, one per device identity.
    public struct PSK: Sendable {
        /// Identity hint sent to clients (DTLS 1.2); `nil` sends none.
        public var hint: String?
        /// The key of a PSK identity, or `nil` to refuse the handshake. Runs
        /// on the event loop thread during each handshake: answer from memory
        /// (a dictionary behind a `Mutex`), never block. Keys are 1...64 bytes.
        public var keyForIdentity: @Sendable (String) -> [UInt8]?

        public init(hint: String? = nil, keyForIdentity: @escaping @Sendable (String) -> [UInt8]?) {
            (self.hint, self.keyForIdentity) = (hint, keyForIdentity)
        }
    }

    /// DTLS with certificates (PEM files). A client must present a certificate signed by
    /// the CA in `caFile`; its subject CN is the request's ``CoAPRequest/certificateName``.
    public struct PKI: Sendable {
        public var caFile: String
        public var certificateFile: String
        public var privateKeyFile: String
        /// A last word on a client's own certificate (DER) once it verified against the CA,
        /// e.g. a revocation check: `false` fails the handshake. Runs on the event loop
        /// thread during each handshake: answer from memory, never block.
        public var acceptsCertificate: (@Sendable (_ der: [UInt8]) -> Bool)?

        public init(
            caFile: String, certificateFile: String, privateKeyFile: String,
            acceptsCertificate: (@Sendable (_ der: [UInt8]) -> Bool)? = nil
        ) {
            (self.caFile, self.certificateFile, self.privateKeyFile) = (caFile, certificateFile, privateKeyFile)
            self.acceptsCertificate = acceptsCertificate
        }
    }

    private struct Running {
        let loop: CoAPEventLoop
        let ownsLoop: Bool
        let core: ServerCore
    }

    private enum Phase {
        case idle
        case starting
        case running(Running)
        case stopping
    }

    private struct State {
        var phase = Phase.idle
        var resources: [CoAPResource] = []
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
    }

    public let configuration: Configuration
    private let logger: Logger
    private let sharedLoop: CoAPEventLoop?
    private let state = Mutex(State())
    private let references = LibcoapReferences()

    /// - Parameters:
    ///   - loop: the event loop to run on; `nil` starts a loop of its own in
    ///     ``start()`` and ends it in ``stop()``.
    ///   - logger: the server's logs, and libcoap's when the loop is its own.
    public init(configuration: Configuration, loop: CoAPEventLoop? = nil, logger: Logger) {
        self.configuration = configuration
        self.sharedLoop = loop
        var logger = logger
        logger[metadataKey: "coap.server"] = "\(configuration.host)"
        self.logger = logger
    }

    deinit {
        stop()
    }

    /// `true` between ``start()`` and ``stop()``.
    public var isRunning: Bool {
        state.withLock { if case .running = $0.phase { true } else { false } }
    }

    /// `Unmanaged` references libcoap holds (context, resources, payloads in flight); 0 once stopped.
    package var libcoapReferenceCount: Int { references.value }

    // MARK: Resources

    /// Registers `resource`; before ``start()`` or while running.
    /// - Throws: ``CoAPError`` `.resourceConflict` for a path already registered,
    ///   `.invalidArgument` for a resource without handlers or an observable one without immediate GET.
    public func addResource(_ resource: CoAPResource) throws(CoAPError) {
        try resource.validate("addResource")
        let running = try state.withLock { state throws(CoAPError) -> Running? in
            guard !state.resources.contains(where: { $0.path == resource.path }) else {
                throw CoAPError(
                    code: .resourceConflict, operation: "addResource",
                    message:
                        "a resource with path \"\(resource.path)\" is already registered; use one resource per path")
            }
            state.resources.append(resource)
            if case .running(let running) = state.phase {
                return running
            }
            return nil
        }
        if let running {
            let logger = self.logger
            running.loop.execute {
                do {
                    try running.core.register(resource)
                } catch {
                    logger.error(
                        "cannot register CoAP resource", metadata: ["coap.path": "\(resource.path)", "error": "\(error)"])
                }
            }
        }
    }

    /// Sends the current representation (the GET handler's answer) to every
    /// observer of `path`. From any thread; handed over to the event loop.
    /// libcoap 4.3.1 cannot narrow this to one query: the GET handler runs once
    /// per observer and sees that observer's query.
    public func notifyObservers(path: String) {
        let running = state.withLock { state -> Running? in
            if case .running(let running) = state.phase { running } else { nil }
        }
        guard let running else { return }
        running.loop.execute { running.core.notifyObservers(path: path) }
    }

    // MARK: Lifecycle

    /// Binds the configured ports and starts answering.
    /// - Throws: ``CoAPError``: `.bindFailed` (port in use), `.invalidArgument`
    ///   (bad configuration, already running), `.resolveFailed`, `.dtlsUnavailable`.
    public func start() throws(CoAPError) {
        let resources = try state.withLock { state throws(CoAPError) -> [CoAPResource] in
            guard case .idle = state.phase else {
                throw .invalid("start", "the server is already running; stop() it first")
            }
            state.phase = .starting
            return state.resources
        }
        do throws(CoAPError) {
            let endpoints = try resolveEndpoints()
            let loop = sharedLoop ?? CoAPEventLoop(name: "coap-server", logger: logger)
            let core = ServerCore(configuration: configuration, logger: logger, references: references, loop: loop)
            let opened = loop.executeAndWait { () -> Result<Void, CoAPError> in
                do throws(CoAPError) {
                    try core.open(endpoints: endpoints, resources: resources)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            guard case .success = opened else {
                if sharedLoop == nil {
                    loop.shutdown()
                }
                if case .failure(let error) = opened {
                    throw error
                }
                throw CoAPError.notRunning("start", "the event loop \(loop.name) is shut down")
            }
            let running = Running(loop: loop, ownsLoop: sharedLoop == nil, core: core)
            let late = state.withLock { state -> ArraySlice<CoAPResource> in
                state.phase = .running(running)
                return state.resources[resources.count...]
            }
            for resource in late {
                loop.execute { try? core.register(resource) }
            }
        } catch {
            state.withLock { $0.phase = .idle }
            throw error
        }
    }

    /// Stops answering: ends deferred handlers, frees the libcoap context
    /// (closing DTLS sessions), releases every reference libcoap held and, if
    /// the loop is the server's own, ends its thread. Idempotent; ``start()``
    /// may be called again afterwards.
    public func stop() {
        let running = state.withLock { state -> Running? in
            guard case .running(let running) = state.phase else { return nil }
            state.phase = .stopping
            return running
        }
        guard let running else { return }
        if running.loop.isCurrentThread {
            // From a handler: libcoap is on the stack, so close after this iteration.
            running.loop.execute { running.core.close() }
        } else {
            _ = running.loop.executeAndWait { running.core.close() }
        }
        if running.ownsLoop {
            running.loop.shutdown()
        }
        let waiters = state.withLock { state in
            state.phase = .idle
            defer { state.stopWaiters.removeAll() }
            return state.stopWaiters
        }
        for waiter in waiters {
            waiter.resume()
        }
        logger.info("CoAP server stopped")
    }

    /// Starts, serves until the task is cancelled or ``stop()`` is called, then
    /// stops: the shape of a swift-service-lifecycle `Service.run()`.
    public func run() async throws {
        try start()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    guard case .running = state.phase, !Task.isCancelled else { return true }
                    state.stopWaiters.append(continuation)
                    return false
                }
                if resumeNow {
                    continuation.resume()
                }
            }
        } onCancel: {
            stop()
        }
        stop()
    }

    private func resolveEndpoints() throws(CoAPError) -> [ResolvedEndpoint] {
        guard configuration.port != nil || configuration.securePort != nil else {
            throw .invalid("start", "neither port nor securePort is set; set at least one")
        }
        guard configuration.handlerTimeout > .zero, configuration.maxDeferredRequests > 0,
            configuration.handshakeTimeout > .zero, configuration.maxHandshakes > 0
        else {
            throw .invalid("start", "handlerTimeout, maxDeferredRequests, maxHandshakes and handshakeTimeout must be positive")
        }
        var endpoints: [ResolvedEndpoint] = []
        if let port = configuration.port {
            endpoints.append(
                try ResolvedEndpoint.resolve(configuration.host, port: port, secure: false, operation: "start"))
        }
        if let port = configuration.securePort {
            guard configuration.psk != nil || configuration.pki != nil else {
                throw .invalid("start", "securePort is set but neither psk nor pki is; DTLS needs pre-shared keys or certificates")
            }
            guard port != configuration.port else {
                throw .invalid("start", "port and securePort are both \(port); use two ports (e.g. 5683 and 5684)")
            }
            endpoints.append(
                try ResolvedEndpoint.resolve(configuration.host, port: port, secure: true, operation: "start"))
        }
        return endpoints
    }
}
