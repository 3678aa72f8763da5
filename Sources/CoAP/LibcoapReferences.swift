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

/// A value libcoap holds as user data: a registered resource (released through
/// `coap_resource_release_userdata_handler` when the context frees it), or a payload
/// handed to `coap_add_data_large_*` (released by its release callback once the last
/// block went out or the transfer expired). Counted in ``LibcoapReferences``.
final class LibcoapHeld<Value: Sendable>: Sendable {
    let value: Value
    let references: LibcoapReferences

    private init(_ value: Value, references: LibcoapReferences) {
        self.value = value
        self.references = references
    }

    /// The user-data pointer for libcoap; pair with ``release(_:)``.
    static func retained(_ value: Value, references: LibcoapReferences) -> UnsafeMutableRawPointer {
        references.retain(LibcoapHeld(value, references: references)).toOpaque()
    }

    /// The value behind a pointer from ``retained(_:references:)``, still held by libcoap.
    static func value(at pointer: UnsafeMutableRawPointer) -> Value {
        Unmanaged<LibcoapHeld>.fromOpaque(pointer).takeUnretainedValue().value
    }

    /// libcoap's release callback: once per pointer from ``retained(_:references:)``.
    static func release(_ pointer: UnsafeMutableRawPointer?) {
        guard let pointer else { return }
        let held = Unmanaged<LibcoapHeld>.fromOpaque(pointer)
        held.takeUnretainedValue().references.release(held)
    }
}

/// A registered resource, the user data of its libcoap resource.
typealias ResourceEntry = LibcoapHeld<CoAPResource>
/// A response or request body in libcoap's hands.
typealias PayloadLease = LibcoapHeld<PayloadStorage>

/// `coap_release_large_data_t`: libcoap calls it exactly once per payload,
/// on success and on failure of `coap_add_data_large_*`.
func releasePayloadLease(_ session: OpaquePointer?, _ pointer: UnsafeMutableRawPointer?) {
    PayloadLease.release(pointer)
}
