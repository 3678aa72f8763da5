import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
public import Logging
import NIOCore
import HummingbirdTLS
import NIOSSL
import OpenAPIHummingbird
import OpenAPIRuntime
public import ServiceLifecycle
import UpdraftCore

/// The HTTP API as a Service of the gateway's group: Hummingbird with the handlers
/// generated from openapi.yaml, bearer tokens on every route but /healthz.
///
/// On graceful shutdown it stops accepting connections and finishes the requests in
/// flight, for at most ``HTTPSettings/shutdownTimeout``; then they are cut.
public struct HTTPServer: Service {
    let settings: HTTPSettings
    let backend: HTTPBackend
    let logger: Logger
    let document: OpenAPIDocumentFile
    let onRunning: @Sendable (Int) async -> Void
    let sendfileRegistry = SendfileRegistry()

    /// - Parameter onRunning: called with the bound port once the server listens.
    public init(settings: HTTPSettings, backend: HTTPBackend, logger: Logger, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) {
        self.init(settings: settings, backend: backend, logger: logger, document: OpenAPIDocumentFile(), onRunning: onRunning)
    }

    init(
        settings: HTTPSettings, backend: HTTPBackend, logger: Logger, document: OpenAPIDocumentFile,
        onRunning: @escaping @Sendable (Int) async -> Void
    ) {
        (self.settings, self.backend, self.logger, self.document, self.onRunning) = (settings, backend, logger, document, onRunning)
    }

    /// The router: authentication, then the generated handlers behind the scope check.
    func router() throws -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        let routes = RouteTable()
        router.add(middleware: NoRouteMiddleware(table: routes))
        router.add(middleware: TokenAuthenticator(store: backend.store))
        router.add(middleware: CallerMiddleware())
        let handlers = APIHandlers(backend: backend, document: document, metrics: GatewayMetrics(snapshot: backend.metrics, instruments: backend.instruments))
        try handlers.registerHandlers(
            on: RecordingTransport(router: router, table: routes), configuration: Self.openAPIConfiguration,
            middlewares: [ScopeAndProblemMiddleware()])
        if let downloads = backend.downloads {
            FirmwareDownloadRoute(downloads: downloads, sendfile: sendfile).register(on: router)
            for method in [HTTPRequest.Method.get, .head] { routes.record(method, FirmwareDownloadRoute.path) }
        }
        return router
    }

    /// JSON as the problems are written: sorted keys, and `/` not escaped as `\/`.
    static let openAPIConfiguration = Configuration(jsonEncodingOptions: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])

    /// Connections beyond ``HTTPSettings/maxConnections`` wait to be accepted; one silent
    /// past ``HTTPSettings/idleTimeout`` is closed.
    /// The idle timeout, and over plain HTTP the zero-copy file bodies (which hold back a
    /// close the idle timeout asks for while their file still makes progress).
    private var channelConfiguration: HTTP1Channel.Configuration {
        let idle = settings.idleTimeout
        guard let registry = sendfile else { return HTTP1Channel.Configuration(idleTimeout: .nanoseconds(Int64(idle / .nanoseconds(1)))) }
        return HTTP1Channel.Configuration(
            additionalChannelHandlers: [SendfileHandler(registry: registry, stallTimeout: idle * SendfileHandler.stallFactor)],
            idleTimeout: .nanoseconds(Int64(idle / .nanoseconds(1))))
    }

    func application() throws -> some ApplicationProtocol {
        let configuration = ApplicationConfiguration(
            address: .hostname(settings.host, port: settings.port), serverName: nil,
            availableConnectionsDelegate: MaximumAvailableConnections(settings.maxConnections, logger: logger))
        let logger = logger
        let onRunning = onRunning
        let running: @Sendable (any Channel) async -> Void = { channel in
            let port = channel.localAddress?.port ?? 0
            logger.info("HTTP API listening", metadata: ["http.address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            await onRunning(port)
        }
        return Application(
            router: try router(), server: try server(), configuration: configuration, onServerRunning: running, logger: logger)
    }

    /// Zero-copy firmware bodies (``SendfileRegistry``): plain HTTP only.
    var sendfile: SendfileRegistry? { settings.sendfile && !settings.usesTLS ? sendfileRegistry : nil }

    private func server() throws -> HTTPServerBuilder {
        guard settings.usesTLS else { return .http1(configuration: channelConfiguration) }
        do {
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(settings.certificateFile).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: settings.keyFile, format: .pem)))
            return try .tls(.http1(configuration: channelConfiguration), tlsConfiguration: tls)
        } catch {
            throw UpdraftError(
                "http_tls_invalid",
                "The HTTPS certificate or key could not be loaded (\(error)). Check http.tls.certificate_file and http.tls.key_file (PEM).")
        }
    }

    public func run() async throws {
        let app = try application()
        let timeout = settings.shutdownTimeout
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await app.run()
                } catch let error as CancellationError {
                    throw error
                } catch {
                    throw UpdraftError(
                        "http_start_failed", "The HTTP API could not serve on \(settings.host):\(settings.port): \(error). Change http.port (0 turns it off).")
                }
            }
            group.addTask {
                // Requests in flight get `timeout` after graceful shutdown; then the server is cancelled.
                try await gracefulShutdown()
                // Event streams never end by themselves: they end now, their clients resume later.
                backend.eventSignal.close()
                try await Task.sleep(for: timeout)
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
