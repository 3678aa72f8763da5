import CCoAP
import Synchronization

/// Counts the `Unmanaged` references libcoap holds for one server or client:
/// the context's app data, resource entries and payloads in flight. Each is
/// released by a libcoap callback or when the context is freed; after `stop()`
/// the count is back to zero (tests check it).
final class LibcoapReferences: Sendable {
    private let count = Atomic<Int>(0)

    var value: Int { count.load(ordering: .acquiring) }

    /// Retains `object` for libcoap and counts it.
    func retain<Object: AnyObject>(_ object: Object) -> Unmanaged<Object> {
        count.add(1, ordering: .relaxed)
        return Unmanaged.passRetained(object)
    }

    /// Releases a reference taken with ``retain(_:)``.
    func release<Object: AnyObject>(_ reference: Unmanaged<Object>) {
        count.subtract(1, ordering: .relaxed)
        reference.release()
    }

    /// Frees `context` (libcoap releases resource entries and payloads in flight through
    /// their callbacks), then the owner's reference that was the context's app data.
    /// Both end `nil`; idempotent. Loop thread, never inside a libcoap callback.
    func freeContext<Owner: AnyObject>(_ context: inout OpaquePointer?, owner: inout Unmanaged<Owner>?) {
        if let handle = context {
            context = nil
            coap_free_context(handle)
        }
        if let reference = owner {
            owner = nil
            release(reference)
        }
    }
}

/// A payload handed to libcoap (`coap_add_data_large_*`), released by its
/// release callback once the last block went out or the transfer expired.
final class PayloadLease: Sendable {
    let storage: PayloadStorage
    let references: LibcoapReferences

    init(_ storage: PayloadStorage, references: LibcoapReferences) {
        self.storage = storage
        self.references = references
    }

    /// The `app_ptr` for libcoap; pair with ``releasePayloadLease``.
    static func retained(_ payload: CoAPPayload, references: LibcoapReferences) -> UnsafeMutableRawPointer {
        references.retain(PayloadLease(payload.storage, references: references)).toOpaque()
    }
}

/// `coap_release_large_data_t`: libcoap calls it exactly once per payload,
/// on success and on failure of `coap_add_data_large_*`.
func releasePayloadLease(_ session: OpaquePointer?, _ pointer: UnsafeMutableRawPointer?) {
    guard let pointer else { return }
    let lease = Unmanaged<PayloadLease>.fromOpaque(pointer)
    lease.takeUnretainedValue().references.release(lease)
}
