import Synchronization

/// Immutable bytes of a response body, allocated once and shared.
///
/// libcoap sends a large body block by block from memory it is given, long
/// after the handler returned; every transfer in flight keeps the storage
/// alive (see ``CoAPResponse``). Build one `CoAPPayload` per firmware image and
/// return it from every GET: concurrent downloads share the bytes instead of
/// copying them per device.
public struct CoAPPayload: Sendable, Hashable, ExpressibleByArrayLiteral {
    let storage: PayloadStorage

    /// Copies `bytes` into new storage.
    public init(_ bytes: some Sequence<UInt8>) {
        storage = PayloadStorage(Array(bytes))
    }

    public init(arrayLiteral elements: UInt8...) {
        self.init(elements)
    }

    /// Empty payload.
    public static let empty = CoAPPayload([])

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.count == 0 }

    /// A copy of the bytes.
    public var bytes: [UInt8] {
        Array(storage.buffer)
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(storage.buffer))
    }

    /// A 64-bit FNV-1a hash of the bytes, never 0, computed once: the default ETag.
    var contentTag: UInt64 { storage.contentTag }

    public static func == (lhs: CoAPPayload, rhs: CoAPPayload) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.buffer.elementsEqual(rhs.storage.buffer)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(storage.contentTag)
    }
}

/// The bytes behind a ``CoAPPayload``: a fixed address for libcoap.
///
/// `@unchecked Sendable`: the buffer is written once in `init` and only read afterwards.
final class PayloadStorage: @unchecked Sendable {
    let buffer: UnsafeBufferPointer<UInt8>
    private let allocation: UnsafeMutablePointer<UInt8>
    private let cachedTag = Atomic<UInt64>(0)

    init(_ bytes: [UInt8]) {
        let allocation = UnsafeMutablePointer<UInt8>.allocate(capacity: max(bytes.count, 1))
        bytes.withUnsafeBufferPointer { source in
            if let base = source.baseAddress {
                allocation.initialize(from: base, count: source.count)
            }
        }
        self.allocation = allocation
        self.buffer = UnsafeBufferPointer(start: allocation, count: bytes.count)
    }

    deinit {
        allocation.deallocate()
    }

    var count: Int { buffer.count }

    var contentTag: UInt64 {
        let cached = cachedTag.load(ordering: .relaxed)
        if cached != 0 {
            return cached
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in buffer {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        let tag = hash == 0 ? 1 : hash
        cachedTag.store(tag, ordering: .relaxed)
        return tag
    }
}
