/// A request as a resource handler sees it.
public struct CoAPRequest: Sendable {
    public var method: CoAPMethod
    /// The resource path without leading slash, e.g. `"fw/image"`.
    public var path: String
    /// The Uri-Query options in order, e.g. `["device=42", "v=2"]`.
    public var query: [String]
    /// The whole body: libcoap reassembles a block-wise (Block1) upload first.
    public var payload: [UInt8]
    public var contentFormat: CoAPContentFormat?
    public var accept: CoAPContentFormat?
    /// The PSK identity the peer authenticated with over DTLS; `nil` over plain UDP.
    public var pskIdentity: String?
    /// The subject CN of the certificate the peer authenticated with over DTLS (verified
    /// against the server's CA); `nil` for PSK and plain UDP.
    public var certificateName: String?
    public var remoteAddress: CoAPAddress

    public init(
        method: CoAPMethod, path: String, query: [String] = [], payload: [UInt8] = [],
        contentFormat: CoAPContentFormat? = nil, accept: CoAPContentFormat? = nil,
        pskIdentity: String? = nil, certificateName: String? = nil, remoteAddress: CoAPAddress
    ) {
        (self.certificateName, self.method, self.path, self.query) = (certificateName, method, path, query)
        (self.payload, self.contentFormat, self.accept) = (payload, contentFormat, accept)
        (self.pskIdentity, self.remoteAddress) = (pskIdentity, remoteAddress)
    }

    /// The value of the first `name=value` query item, `""` for a bare `name`.
    public func queryValue(_ name: String) -> String? {
        for item in query {
            if item == name {
                return ""
            }
            if item.hasPrefix(name), item.dropFirst(name.count).first == "=" {
                return String(item.dropFirst(name.count + 1))
            }
        }
        return nil
    }
}

/// What a resource handler answers.
///
/// A payload of any size is sent through libcoap's large-response support:
/// a client asking with Block2 gets blocks of its chosen size (16...1024), a
/// body larger than one datagram is split even when the client did not ask,
/// and block-wise responses carry Size2 and ETag. libcoap keeps the payload
/// until the last block went out (or the transfer expired).
public struct CoAPResponse: Sendable {
    public var code: CoAPResponseCode
    public var payload: CoAPPayload
    /// Sent with every non-empty payload (libcoap's large-response API always adds one).
    public var contentFormat: CoAPContentFormat
    /// `nil`: a 2.xx response with a payload gets an ETag derived from the payload
    /// bytes, so the same body keeps its ETag across requests and restarts.
    /// Sent in libcoap's encoding: big-endian without leading zero bytes.
    public var etag: UInt64?
    /// Seconds the representation stays fresh; `nil` omits Max-Age (RFC 7252 default: 60).
    public var maxAge: UInt32?
    /// Location-Path of a created resource, e.g. `"jobs/17"`.
    public var locationPath: String?
    /// Called with the payload bytes each answer to a GET carries (its Block2 block, or
    /// the whole payload): what the server sent of it, for byte counters.
    public var sent: (@Sendable (_ bytes: Int) -> Void)?

    public init(
        code: CoAPResponseCode = .content, payload: CoAPPayload = .empty,
        contentFormat: CoAPContentFormat = .octetStream, etag: UInt64? = nil, maxAge: UInt32? = nil,
        locationPath: String? = nil
    ) {
        (self.code, self.payload, self.contentFormat, self.etag) = (code, payload, contentFormat, etag)
        (self.maxAge, self.locationPath) = (maxAge, locationPath)
    }

    /// Copies `payload` into a new ``CoAPPayload``.
    public init(
        code: CoAPResponseCode = .content, payload: [UInt8], contentFormat: CoAPContentFormat = .octetStream,
        etag: UInt64? = nil, maxAge: UInt32? = nil, locationPath: String? = nil
    ) {
        self.init(
            code: code, payload: CoAPPayload(payload), contentFormat: contentFormat, etag: etag, maxAge: maxAge,
            locationPath: locationPath)
    }

    /// A response without payload, or with a short text/plain diagnostic.
    public static func status(_ code: CoAPResponseCode, diagnostic: String? = nil) -> CoAPResponse {
        guard let diagnostic, !diagnostic.isEmpty else {
            return CoAPResponse(code: code)
        }
        return CoAPResponse(code: code, payload: Array(diagnostic.utf8), contentFormat: .textPlain)
    }
}

/// How a resource answers one method.
public enum CoAPHandler: Sendable {
    /// Runs on the event loop thread inside libcoap's callback; the answer is
    /// piggybacked on the ACK. Must be quick and must not block: it holds up
    /// every other request of the loop. The right choice for answers from
    /// memory, large GETs, and the GET of an observable resource (libcoap calls
    /// it again for every notification).
    case immediate(@Sendable (CoAPRequest) -> CoAPResponse)
    /// Runs as a task off the loop. A confirmable request is acknowledged at
    /// once (empty ACK) and answered with a separate response when the handler
    /// returns; a thrown error answers 5.00, a handler slower than
    /// ``CoAPServer/Configuration/handlerTimeout`` is cancelled and answers 5.03.
    case deferred(@Sendable (CoAPRequest) async throws -> CoAPResponse)

    var isImmediate: Bool {
        if case .immediate = self { true } else { false }
    }
}

/// A path and the handlers of its methods. Methods without a handler answer
/// 4.05 (libcoap), unknown paths 4.04 (libcoap).
public struct CoAPResource: Sendable {
    /// Without leading or trailing slash, e.g. `"fw/image"`.
    public let path: String
    /// Clients may observe it (RFC 7641); ``CoAPServer/notifyObservers(path:)``
    /// sends them the GET handler's new answer. The GET handler must be ``CoAPHandler/immediate(_:)``.
    public var isObservable: Bool
    /// Notifications as CON (acknowledged, retransmitted) rather than NON; with
    /// NON, libcoap still sends every fifth as CON to detect gone observers.
    public var confirmableNotifications: Bool
    public var handlers: [CoAPMethod: CoAPHandler]

    public init(
        path: String, observable: Bool = false, confirmableNotifications: Bool = true,
        handlers: [CoAPMethod: CoAPHandler] = [:]
    ) {
        self.path = Self.normalize(path)
        self.isObservable = observable
        self.confirmableNotifications = confirmableNotifications
        self.handlers = handlers
    }

    /// Sets the handler of `method`, replacing any earlier one.
    public mutating func on(_ method: CoAPMethod, _ handler: CoAPHandler) {
        handlers[method] = handler
    }

    static func normalize(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
    }

    func validate(_ operation: String) throws(CoAPError) {
        guard !path.isEmpty, path.split(separator: "/").allSatisfy({ $0.utf8.count <= 255 }) else {
            throw .invalid(
                operation, "resource path \"\(path)\" is empty or has a segment over 255 bytes; use e.g. \"fw/image\"")
        }
        guard !handlers.isEmpty else {
            throw .invalid(operation, "resource \"\(path)\" has no handler; add one per method it answers")
        }
        if isObservable, let get = handlers[.get], !get.isImmediate {
            throw .invalid(
                operation,
                "observable resource \"\(path)\" needs an immediate GET handler: "
                    + "libcoap calls it synchronously for every notification"
            )
        }
        if isObservable && handlers[.get] == nil {
            throw .invalid(operation, "observable resource \"\(path)\" needs a GET handler")
        }
    }
}
