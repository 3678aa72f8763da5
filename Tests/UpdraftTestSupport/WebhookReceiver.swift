import Crypto
import Foundation
import Hummingbird
import LoopbackPorts
import Logging
import Synchronization

/// A backend's webhook endpoint in the test: a real Hummingbird server on a free port
/// that records every POST and answers what `answer` says for the request number (1, 2, ...).
package final class WebhookReceiver: Sendable {
    package struct Request: Sendable {
        package var body: [UInt8]
        package var signature: String?
        package var seq: String?
        package var attempt: String?
        package var status = 0
        /// The `seq` of each event in the body.
        package var seqs: [Int64] {
            let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
            return ((object?["events"] as? [[String: Any]]) ?? []).compactMap { ($0["seq"] as? NSNumber)?.int64Value }
        }
        package var kinds: [String] {
            let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
            return ((object?["events"] as? [[String: Any]]) ?? []).compactMap { $0["kind"] as? String }
        }
    }

    package let port: Int
    private let requests = Mutex<[Request]>([])
    private let task = Mutex<Task<Void, any Error>?>(nil)
    private let answer: Mutex<@Sendable (Int) -> HTTPResponse.Status>

    package var url: String { "http://127.0.0.1:\(port)/hook" }
    package var received: [Request] { requests.withLock { $0 } }
    /// The requests it answered 2xx.
    package var accepted: [Request] { received.filter { (200..<300).contains($0.status) } }

    package init(answer: @escaping @Sendable (Int) -> HTTPResponse.Status) {
        port = PortProbe.freePort()
        self.answer = Mutex(answer)
    }

    package func setAnswer(_ answer: @escaping @Sendable (Int) -> HTTPResponse.Status) { self.answer.withLock { $0 = answer } }

    package func start() async throws {
        let router = Router()
        router.post("hook") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 16 << 20)
            let header = { (name: String) in request.headers.first { $0.name.canonicalName == name.lowercased() }?.value }
            var recorded = Request(
                body: Array(buffer: body), signature: header("Updraft-Signature"), seq: header("Updraft-Seq"), attempt: header("Updraft-Attempt"))
            let answer = self.answer.withLock { $0 }
            let status = self.requests.withLock {
                let status = answer($0.count + 1)
                recorded.status = status.code
                $0.append(recorded)
                return status
            }
            return Response(status: status)
        }
        var logger = Logger(label: "webhook.receiver")
        logger.logLevel = .critical
        let listening = Atomic<Bool>(false)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { _ in listening.store(true, ordering: .releasing) }, logger: logger)
        task.withLock { $0 = Task { try await app.runService() } }
        try await eventually(timeout: .seconds(30), "the webhook receiver listens") { listening.load(ordering: .acquiring) }
    }

    package func stop() async {
        let task = task.withLock { $0 }
        task?.cancel()
        _ = await task?.result
    }

    package static func verify(_ request: Request, secret: String) -> Bool {
        let mac = HMAC<SHA256>.authenticationCode(for: request.body, using: SymmetricKey(data: Array(secret.utf8)))
        return request.signature == "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }
}

/// A TCP endpoint that misbehaves: accepts and never answers, or answers bytes that are not HTTP.
package final class RawTCPServer: Sendable {
    package enum Behavior: Sendable { case silent, garbage }
    package let port: Int
    private let listener: Int32
    private let clients = Clients()

    package var url: String { "http://127.0.0.1:\(port)/hook" }
    package var accepted: Int { clients.all.count }

    package init(_ behavior: Behavior) throws {
        port = PortProbe.freePort()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withLoopbackAddress(port: port) { bind(fd, $0, $1) }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        listener = fd
        let clients = self.clients
        Thread.detachNewThread { Self.serve(fd, behavior, clients) }
    }

    private static func serve(_ fd: Int32, _ behavior: Behavior, _ clients: Clients) {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 { return }
            clients.add(client)
            guard behavior == .garbage else { continue }
            var buffer = [UInt8](repeating: 0, count: 65536)
            _ = recv(client, &buffer, buffer.count, 0)
            let junk = Array("SMTP READY\r\n\u{0}\u{1}garbage\r\n\r\n".utf8)
            _ = send(client, junk, junk.count, Int32(MSG_NOSIGNAL))
            shutdown(client, Int32(SHUT_RDWR))
        }
    }

    package func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for client in clients.all { close(client) }
    }

    private final class Clients: Sendable {
        private let fds = Mutex<[Int32]>([])
        func add(_ fd: Int32) { fds.withLock { $0.append(fd) } }
        var all: [Int32] { fds.withLock { $0 } }
    }
}
