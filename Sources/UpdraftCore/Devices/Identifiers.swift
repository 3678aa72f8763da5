/// Rules shared by every identifier that travels in MQTT topics or CLI arguments:
/// no topic wildcards or separators, no whitespace, bounded length.
enum IdentifierRule {
    static func isValid(_ value: String, maxLength: Int) -> Bool {
        guard !value.isEmpty, value.utf8.count <= maxLength else { return false }
        // "." and ".." (any run of punctuation) name no version or device, and are path
        // components: a version "..", stored as a file name, would leave its folder.
        guard value.utf8.contains(where: { UInt8(ascii: "0")...UInt8(ascii: "9") ~= $0 || UInt8(ascii: "a")...UInt8(ascii: "z") ~= $0 | 0x20 }) else {
            return false
        }
        return value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"):
                return true
            default:
                return false
            }
        }
    }
}

/// An identifier whose text is its value: parsed with ``init(validating:)``, and from that
/// one parser made from a raw value, a literal (tests) and JSON (a plain string).
public protocol TextIdentifier: RawRepresentable, Hashable, Sendable, Codable, Comparable,
    CustomStringConvertible, ExpressibleByStringLiteral where RawValue == String
{
    static var kind: String { get }
    init(validating value: String) throws(UpdraftError)
}

extension TextIdentifier {
    public init?(rawValue: String) {
        guard let id = try? Self(validating: rawValue) else { return nil }
        self = id
    }

    public init(stringLiteral value: String) {
        guard let id = Self(rawValue: value) else { preconditionFailure("invalid \(Self.kind) literal") }
        self = id
    }

    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(validating: value)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Declares a validated string identifier type: one token under the shared character rule.
public protocol ValidatedIdentifier: TextIdentifier {
    static var maxLength: Int { get }
    init(unchecked: String)
}

extension ValidatedIdentifier {
    public static var rule: String {
        "use 1-\(maxLength) characters from letters, digits, '.', '-' and '_', at least one of them a letter or digit"
    }

    public init(validating value: String) throws(UpdraftError) {
        guard IdentifierRule.isValid(value, maxLength: Self.maxLength) else {
            throw .invalid(Self.kind, value, rule: Self.rule)
        }
        self.init(unchecked: value)
    }
}

/// A device, identified by its MQTT username.
public struct DeviceID: ValidatedIdentifier {
    public static let kind = "device id"
    public static let maxLength = 64
    public let rawValue: String
    public init(unchecked: String) { rawValue = unchecked }
}

/// A product (device model); firmware is built for one product.
public struct ProductID: ValidatedIdentifier {
    public static let kind = "product"
    public static let maxLength = 64
    public let rawValue: String
    public init(unchecked: String) { rawValue = unchecked }
}

/// A firmware version string (Alibaba's rule: 1-64 letters, digits, '.', '-', '_').
/// Ordering between versions is given by the manifest sequence number, not by the string.
public struct FirmwareVersion: ValidatedIdentifier {
    public static let kind = "version"
    public static let maxLength = 64
    public let rawValue: String
    public init(unchecked: String) { rawValue = unchecked }
}

/// Identifies one job (one device updating to one firmware). Appears in MQTT topics.
public struct JobID: ValidatedIdentifier {
    public static let kind = "job id"
    public static let maxLength = 32
    public let rawValue: String
    public init(unchecked: String) { rawValue = unchecked }

    public static func random() -> JobID { JobID(unchecked: "j" + randomHex(bytes: 8)) }
}

/// Identifies a release (one operator decision that created jobs).
public struct ReleaseID: ValidatedIdentifier {
    public static let kind = "release id"
    public static let maxLength = 32
    public let rawValue: String
    public init(unchecked: String) { rawValue = unchecked }

    public static func random() -> ReleaseID { ReleaseID(unchecked: "r" + randomHex(bytes: 6)) }
}

func randomHex(bytes: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<bytes).map { _ in
        let byte = UInt8.random(in: 0...255, using: &generator)
        return String(byte, radix: 16).leftPadded(to: 2)
    }.joined()
}

extension String {
    func leftPadded(to length: Int, with pad: Character = "0") -> String {
        count >= length ? self : String(repeating: pad, count: length - count) + self
    }
}

/// A firmware image in the catalog: `product@version`, unique in the catalog and readable on a
/// command line. The text form (``rawValue``) is what the store's columns, the wire bodies, the
/// event log and the CLI carry; it is encoded as that plain string.
public struct FirmwareID: TextIdentifier {
    public static let kind = "firmware id"
    public let product: ProductID
    public let version: FirmwareVersion
    /// `product@version`. '@' is in neither part, so the text names exactly one pair.
    public let rawValue: String

    public init(product: ProductID, version: FirmwareVersion) {
        self.product = product
        self.version = version
        rawValue = "\(product.rawValue)@\(version.rawValue)"
    }

    /// Parses `product@version`.
    public init(validating text: String) throws(UpdraftError) {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw UpdraftError(
                "invalid_firmware_id",
                "Invalid firmware id '\(text.prefix(80))': write it as PRODUCT@VERSION (see `updraft firmware list`)."
            )
        }
        self.init(
            product: try ProductID(validating: String(parts[0])), version: try FirmwareVersion(validating: String(parts[1])))
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.rawValue == rhs.rawValue }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }
}
