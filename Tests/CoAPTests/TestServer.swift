import CoAP
import Foundation
import Synchronization
import UpdraftTestSupport
import LoopbackPorts

/// A ``CoAPServer`` on free ports of 127.0.0.1 with the resources the tests use.
///
/// - `fw/image`: GET, 100_000 random bytes (immediate handler, shared payload).
/// - `whoami`: GET, the PSK identity of the request, or `anonymous`.
/// - `echo`: POST, deferred handler answering 2.04 with the body reversed.
/// - `state`: observable GET of ``state``.
/// - `inspect`: GET and POST, the request as the handler saw it (``Inspection``).
final class TestServer: Sendable {
    static let keys: [String: [UInt8]] = [
        "device-1": Array("secret-1".utf8),
        "device-2": Array("secret-2".utf8),
    ]

    let image: [UInt8]
    let port: Int
    let securePort: Int
    let server: CoAPServer
    let state = Locked("v1")
    /// Identities the PSK lookup was asked for.
    let lookedUp = Locked<[String]>([])

    /// - Parameter rebindable: ports that can be bound again after a stop (see ``PortProbe/udpPortBelowEphemeralRange()``).
    init(
        extraResources: [CoAPResource] = [], handlerTimeout: Duration = .seconds(30), rebindable: Bool = false
    ) throws {
        image = randomBytes(100_000)
        port = rebindable ? PortProbe.udpPortBelowEphemeralRange() : PortProbe.ephemeralUDPPort()
        let pick = rebindable ? PortProbe.udpPortBelowEphemeralRange : PortProbe.ephemeralUDPPort
        var secure = pick()
        while secure == port {
            secure = pick()
        }
        securePort = secure
        let lookedUp = self.lookedUp
        let psk = CoAPServer.PSK(hint: "updraft") { identity in
            lookedUp.withLock { $0.append(identity) }
            return TestServer.keys[identity]
        }
        server = CoAPServer(
            configuration: .init(
                host: "127.0.0.1", port: port, securePort: securePort, psk: psk, handlerTimeout: handlerTimeout),
            logger: testLogger)

        let payload = CoAPPayload(image)
        try server.addResource(
            CoAPResource(path: "fw/image", handlers: [.get: .immediate { _ in CoAPResponse(payload: payload, maxAge: 3600) }]))
        try server.addResource(
            CoAPResource(
                path: "whoami",
                handlers: [
                    .get: .immediate { request in
                        CoAPResponse(payload: Array((request.pskIdentity ?? "anonymous").utf8), contentFormat: .textPlain)
                    }
                ]))
        try server.addResource(
            CoAPResource(
                path: "echo",
                handlers: [
                    .post: .deferred { request in
                        try await Task.sleep(for: .milliseconds(10))
                        return CoAPResponse(
                            code: .changed, payload: Array(request.payload.reversed()),
                            contentFormat: request.contentFormat ?? .octetStream)
                    }
                ]))
        let state = self.state
        try server.addResource(
            CoAPResource(
                path: "state", observable: true,
                handlers: [
                    .get: .immediate { _ in
                        CoAPResponse(payload: Array(state.withLock { $0 }.utf8), contentFormat: .textPlain)
                    }
                ]))
        let inspect: CoAPHandler = .immediate { request in
            let seen = Inspection(
                method: "\(request.method)", path: request.path, query: request.query,
                contentFormat: request.contentFormat?.rawValue, accept: request.accept?.rawValue,
                payloadCount: request.payload.count, pskIdentity: request.pskIdentity,
                remoteHost: request.remoteAddress.host, remotePort: request.remoteAddress.port,
                device: request.queryValue("device"))
            return CoAPResponse(payload: Array(seen.encoded.utf8), contentFormat: .json, maxAge: 7)
        }
        try server.addResource(CoAPResource(path: "inspect", handlers: [.get: inspect, .post: inspect]))
        for resource in extraResources {
            try server.addResource(resource)
        }
    }

    var url: String { "coap://127.0.0.1:\(port)" }
    var secureURL: String { "coaps://127.0.0.1:\(securePort)" }

    /// Sets the observable state and notifies its observers.
    func update(_ value: String) {
        state.withLock { $0 = value }
        server.notifyObservers(path: "state")
    }
}

/// A value behind a mutex that closures can share.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        mutex = Mutex(value)
    }

    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R {
        mutex.withLock { body(&$0) }
    }
}

/// Runs `body` with a started ``TestServer`` and stops it afterwards, also on failure.
func withTestServer<T>(
    extraResources: [CoAPResource] = [], handlerTimeout: Duration = .seconds(30),
    _ body: (TestServer) async throws -> T
) async throws -> T {
    let fixture = try TestServer(extraResources: extraResources, handlerTimeout: handlerTimeout)
    try fixture.server.start()
    defer { fixture.server.stop() }
    return try await body(fixture)
}

/// What the `inspect` resource saw of a request.
struct Inspection: Codable, Equatable {
    var method: String
    var path: String
    var query: [String]
    var contentFormat: UInt16?
    var accept: UInt16?
    var payloadCount: Int
    var pskIdentity: String?
    var remoteHost: String
    var remotePort: Int
    var device: String?

    var encoded: String {
        String(decoding: (try? JSONEncoder().encode(self)) ?? Data(), as: UTF8.self)
    }
}

extension Inspection {
    init(_ payload: [UInt8]) throws {
        self = try JSONDecoder().decode(Inspection.self, from: Data(payload))
    }
}
