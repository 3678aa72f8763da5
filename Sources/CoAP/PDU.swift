import CCoAP
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// Reading and writing PDUs. Loop thread only: `pdu` and `session` are libcoap objects.
package enum PDU {
    /// Values of every option `number` of `pdu`, in order.
    static func options(_ pdu: OpaquePointer, _ number: Int32) -> [[UInt8]] {
        var filter = coap_opt_filter_t()
        coap_option_filter_clear(&filter)
        guard coap_option_filter_set(&filter, coap_option_num_t(number)) != 0 else { return [] }
        var iterator = coap_opt_iterator_t()
        guard coap_option_iterator_init(pdu, &iterator, &filter) != nil else { return [] }
        var values: [[UInt8]] = []
        while let option = coap_option_next(&iterator) {
            values.append(value(option))
        }
        return values
    }

    /// What a server reads from every request, gathered in one pass over the options
    /// (one lookup per option would walk them four times).
    package struct RequestOptions {
        package var query: [String] = []
        package var contentFormat: CoAPContentFormat?
        package var accept: CoAPContentFormat?
        /// Block2 number and SZX, when the request has the option.
        package var block2: (num: UInt32, szx: UInt32)?
    }

    package static func requestOptions(_ pdu: OpaquePointer) -> RequestOptions {
        var result = RequestOptions()
        var iterator = coap_opt_iterator_t()
        guard coap_option_iterator_init(pdu, &iterator, nil) != nil else { return result }
        while let option = coap_option_next(&iterator) {
            let length = Int(coap_opt_length(option))
            let bytes = UnsafeBufferPointer(start: length > 0 ? coap_opt_value(option) : nil, count: length)
            switch Int32(iterator.number) {
            case COAP_OPTION_URI_QUERY:
                result.query.append(String(decoding: bytes, as: UTF8.self))
            case COAP_OPTION_CONTENT_FORMAT:
                result.contentFormat = CoAPContentFormat(rawValue: UInt16(truncatingIfNeeded: decode(bytes)))
            case COAP_OPTION_ACCEPT:
                result.accept = CoAPContentFormat(rawValue: UInt16(truncatingIfNeeded: decode(bytes)))
            case COAP_OPTION_BLOCK2 where length <= 3:
                let value = decode(bytes)
                result.block2 = (UInt32(truncatingIfNeeded: value >> 4), UInt32(truncatingIfNeeded: value & 0x7))
            default:
                break
            }
        }
        return result
    }

    /// The first option `number` of `pdu`, if present.
    static func option(_ pdu: OpaquePointer, _ number: Int32) -> [UInt8]? {
        var iterator = coap_opt_iterator_t()
        guard let option = coap_check_option(pdu, coap_option_num_t(number), &iterator) else { return nil }
        return value(option)
    }

    /// An unsigned integer option (Content-Format, Max-Age, Size2, Observe...).
    static func uintOption(_ pdu: OpaquePointer, _ number: Int32) -> UInt64? {
        option(pdu, number).map(decode)
    }

    /// A Content-Format or Accept option.
    static func contentFormat(_ pdu: OpaquePointer, _ number: Int32) -> CoAPContentFormat? {
        uintOption(pdu, number).map { CoAPContentFormat(rawValue: UInt16(truncatingIfNeeded: $0)) }
    }

    private static func value(_ option: UnsafeMutablePointer<coap_opt_t>) -> [UInt8] {
        let length = Int(coap_opt_length(option))
        guard length > 0, let start = coap_opt_value(option) else { return [] }
        return Array(UnsafeBufferPointer(start: start, count: length))
    }

    static func decode(_ bytes: some Collection<UInt8>) -> UInt64 {
        bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Big-endian without leading zero bytes (zero is empty), as libcoap encodes.
    static func encode(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        var rest = value
        while rest != 0 {
            bytes.insert(UInt8(rest & 0xFF), at: 0)
            rest >>= 8
        }
        return bytes
    }

    @discardableResult
    static func add(_ pdu: OpaquePointer, _ number: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { buffer in
            coap_add_option(pdu, coap_option_num_t(number), buffer.count, buffer.baseAddress) != 0
        }
    }

    @discardableResult
    static func add(_ pdu: OpaquePointer, _ number: Int32, uint value: UInt64) -> Bool {
        add(pdu, number, encode(value))
    }

    /// Path segments as Uri-Path or Location-Path options.
    @discardableResult
    static func add(_ pdu: OpaquePointer, _ number: Int32, path: String) -> Bool {
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            guard add(pdu, number, Array(segment.utf8)) else { return false }
        }
        return true
    }

    static func token(_ pdu: OpaquePointer) -> [UInt8] {
        let token = coap_pdu_get_token(pdu)
        guard token.length > 0, let start = token.s else { return [] }
        return Array(UnsafeBufferPointer(start: start, count: token.length))
    }

    /// The body; with COAP_BLOCK_SINGLE_BODY libcoap presents it whole.
    package static func payload(_ pdu: OpaquePointer) -> [UInt8] {
        var length = 0
        var data: UnsafePointer<UInt8>?
        var offset = 0
        var total = 0
        guard coap_get_data_large(pdu, &length, &data, &offset, &total) != 0, length > 0, let data else {
            return []
        }
        return Array(UnsafeBufferPointer(start: data, count: length))
    }

    package static func code(_ pdu: OpaquePointer) -> UInt8 {
        UInt8(truncatingIfNeeded: coap_pdu_get_code(pdu).rawValue)
    }

    static func setCode(_ pdu: OpaquePointer, _ code: CoAPResponseCode) {
        coap_pdu_set_code(pdu, coap_pdu_code_t(rawValue: UInt32(code.rawValue)))
    }

    /// `nil` for a family other than IPv4/IPv6.
    static func address(_ address: UnsafePointer<coap_address_t>) -> CoAPAddress? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            buffer.initialize(repeating: 0)
            let port = ccoap_address_format(address, buffer.baseAddress!, buffer.count)
            guard port >= 0 else { return nil }
            return CoAPAddress(host: String(cString: buffer.baseAddress!), port: Int(port))
        }
    }
}

/// A UDP address resolved from a host and port.
struct ResolvedEndpoint: @unchecked Sendable {  // coap_address_t is a plain C struct, copied by value
    var address: coap_address_t
    let host: String
    let port: Int
    /// `coaps` (DTLS) rather than `coap`.
    let secure: Bool

    var description: String { "\(secure ? "coaps" : "coap")://\(host):\(port)" }

    /// Resolves `host`; blocks in `getaddrinfo` for a name. Not on the event loop.
    static func resolve(_ host: String, port: Int, secure: Bool, operation: String) throws(CoAPError) -> Self {
        try resolve(host, port: port, secure: secure, numericOnly: false, operation: operation)!
    }

    /// Resolves `host`: a numeric address at once, a name on a Dispatch
    /// thread, so that a slow lookup holds up neither the event loop nor the
    /// cooperative thread pool.
    static func resolveAsync(_ host: String, port: Int, secure: Bool, operation: String) async throws -> Self {
        if let numeric = try resolve(host, port: port, secure: secure, numericOnly: true, operation: operation) {
            return numeric
        }
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(
                    with: Result { () throws(CoAPError) in
                        try resolve(host, port: port, secure: secure, operation: operation)
                    })
            }
        }
    }

    /// `nil` when `numericOnly` and `host` is a name.
    private static func resolve(_ host: String, port: Int, secure: Bool, numericOnly: Bool, operation: String)
        throws(CoAPError) -> Self?
    {
        guard (1...65535).contains(port) else {
            throw .invalid(operation, "port \(port) is out of range; use 1...65535")
        }
        var address = coap_address_t()
        let rc = ccoap_address_resolve(host, UInt16(port), numericOnly ? 1 : 0, &address)
        if rc == EAI_NONAME && numericOnly {
            return nil
        }
        guard rc == 0 else {
            throw CoAPError(
                code: .resolveFailed, operation: operation,
                message:
                    "cannot resolve \"\(host)\": \(String(cString: gai_strerror(rc))); use an IP address or a resolvable name"
            )
        }
        return Self(address: address, host: host, port: port, secure: secure)
    }
}

extension CoAPAddress {
    init?(_ address: UnsafePointer<coap_address_t>?) {
        guard let address, let value = PDU.address(address) else { return nil }
        self = value
    }
}
