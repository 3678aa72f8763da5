/// A CoAP request method (RFC 7252, RFC 8132).
public enum CoAPMethod: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case get = 1
    case post = 2
    case put = 3
    case delete = 4
    case fetch = 5
    case patch = 6
    case iPatch = 7

    public var description: String {
        switch self {
        case .get: "GET"
        case .post: "POST"
        case .put: "PUT"
        case .delete: "DELETE"
        case .fetch: "FETCH"
        case .patch: "PATCH"
        case .iPatch: "iPATCH"
        }
    }
}

/// A CoAP response code: class (2, 4, 5) and detail, written `2.05`.
public struct CoAPResponseCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    /// The code byte: `class << 5 | detail`.
    public let rawValue: UInt8

    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    /// `CoAPResponseCode(class: 4, detail: 4)` is 4.04.
    public init(class codeClass: UInt8, detail: UInt8) {
        self.rawValue = (codeClass & 0x7) << 5 | (detail & 0x1F)
    }

    public var codeClass: UInt8 { rawValue >> 5 }
    public var detail: UInt8 { rawValue & 0x1F }
    /// Class 2 (2.xx).
    public var isSuccess: Bool { codeClass == 2 }

    public var description: String {
        let detail = self.detail
        return "\(codeClass).\(detail < 10 ? "0" : "")\(detail)"
    }

    public static let created = Self(class: 2, detail: 1)
    public static let deleted = Self(class: 2, detail: 2)
    public static let valid = Self(class: 2, detail: 3)
    public static let changed = Self(class: 2, detail: 4)
    public static let content = Self(class: 2, detail: 5)
    public static let badRequest = Self(class: 4, detail: 0)
    public static let unauthorized = Self(class: 4, detail: 1)
    public static let badOption = Self(class: 4, detail: 2)
    public static let forbidden = Self(class: 4, detail: 3)
    public static let notFound = Self(class: 4, detail: 4)
    public static let methodNotAllowed = Self(class: 4, detail: 5)
    public static let notAcceptable = Self(class: 4, detail: 6)
    public static let requestEntityIncomplete = Self(class: 4, detail: 8)
    public static let conflict = Self(class: 4, detail: 9)
    public static let preconditionFailed = Self(class: 4, detail: 12)
    public static let requestEntityTooLarge = Self(class: 4, detail: 13)
    public static let unsupportedContentFormat = Self(class: 4, detail: 15)
    /// RFC 8516: the client sends too fast; Max-Age says when to try again.
    public static let tooManyRequests = Self(class: 4, detail: 29)
    public static let internalServerError = Self(class: 5, detail: 0)
    public static let notImplemented = Self(class: 5, detail: 1)
    public static let serviceUnavailable = Self(class: 5, detail: 3)
    public static let gatewayTimeout = Self(class: 5, detail: 4)
}

/// A CoAP Content-Format number (IANA "CoAP Content-Formats" registry).
public struct CoAPContentFormat: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16

    public init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    public var description: String { "\(rawValue)" }

    public static let textPlain = Self(rawValue: 0)
    public static let linkFormat = Self(rawValue: 40)
    public static let xml = Self(rawValue: 41)
    public static let octetStream = Self(rawValue: 42)
    public static let exi = Self(rawValue: 47)
    public static let json = Self(rawValue: 50)
    public static let cbor = Self(rawValue: 60)
}

/// An IP address and UDP port, e.g. the peer of a request.
public struct CoAPAddress: Sendable, Hashable, CustomStringConvertible {
    /// Numeric IPv4 or IPv6 address.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        (self.host, self.port) = (host, port)
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// A Block2 option as a response carries it (RFC 7959): which block of the body the
/// payload is, and whether more follow.
public struct CoAPBlock: Sendable, Hashable {
    public var number: Int
    public var more: Bool
    /// 16, 32, ..., 1024 bytes.
    public var size: Int

    public init(number: Int, more: Bool, size: Int) {
        (self.number, self.more, self.size) = (number, more, size)
    }

    /// From the option's value: NUM << 4 | M << 3 | SZX; `nil` for SZX 7 (BERT, reserved here).
    init?(optionValue value: UInt64) {
        guard value & 0x7 != 7 else { return nil }
        self.init(number: Int(value >> 4), more: value & 0x8 != 0, size: 16 << Int(value & 0x7))
    }
}

/// The block sizes of RFC 7959: 16, 32, ..., 1024 bytes.
enum BlockSize {
    /// SZX of a block size (16 -> 0 ... 1024 -> 6), `nil` if `size` is not one.
    static func szx(_ size: Int) -> UInt32? {
        guard size >= 16, size <= 1024, size & (size - 1) == 0 else { return nil }
        return UInt32(size.trailingZeroBitCount - 4)
    }
}
