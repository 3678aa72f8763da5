import Synchronization

/// What an adapter counts: messages received, refusals by code (`rejected.<code>`),
/// offers, chunks and bytes sent. One per adapter, for tests, benches and the demo.
public final class GatewayCounters: Sendable {
    private let values = Mutex<[String: Int]>([:])
    public init() {}
    public func increment(_ key: String, by amount: Int = 1) { values.withLock { $0[key, default: 0] += amount } }
    public subscript(key: String) -> Int { values.withLock { $0[key] ?? 0 } }
    public var snapshot: [String: Int] { values.withLock { $0 } }
}
