/// What a firmware download request gets, from its Range and conditional headers
/// (RFC 9110 §13–14), for an image of `size` bytes whose strong ETag is `etag`
/// (the quoted SHA-256). Pure: the route turns it into a response.
///
/// - If-None-Match naming the ETag (weak comparison) or `*`: 304.
/// - Range `bytes=a-b`, `bytes=a-` or `bytes=-n`: 206 with that part, clamped to the image;
///   a first byte at or past the end (or `-0`): 416. Only one range is served: a request
///   for several gets the whole image (200), as RFC 9110 allows a server to ignore Range.
///   So does a Range that is not valid syntax.
/// - If-Range: the Range applies only when it names the ETag exactly (strong comparison);
///   a date or another tag gets the whole image.
enum DownloadConditions: Equatable {
    case notModified
    case whole
    case part(ClosedRange<Int>)
    case unsatisfiable

    static func evaluate(size: Int, etag: String, ifNoneMatch: [String], ifRange: String?, range: String?) -> Self {
        if matchesAny(ifNoneMatch, etag) { return .notModified }
        guard let range else { return .whole }
        if let ifRange, ifRange.trimmed != etag { return .whole }
        return parse(range, size: size)
    }

    /// If-None-Match values (each may be a list), compared weakly.
    static func matchesAny(_ values: [String], _ etag: String) -> Bool {
        for value in values {
            for tag in value.split(separator: ",") {
                let tag = String(tag).trimmed
                if tag == "*" || tag == etag || tag == "W/" + etag { return true }
            }
        }
        return false
    }

    static func parse(_ header: String, size: Int) -> Self {
        let header = header.trimmed
        guard header.lowercased().hasPrefix("bytes="), size > 0 else { return .whole }
        let spec = header.dropFirst(6).trimmed
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .whole }
        let first = spec[..<dash].trimmed
        let last = spec[spec.index(after: dash)...].trimmed
        if first.isEmpty {
            // A suffix: the last n bytes.
            guard let n = number(last) else { return .whole }
            guard n > 0 else { return .unsatisfiable }
            return .part(max(0, size - n)...(size - 1))
        }
        guard let start = number(first) else { return .whole }
        var end = size - 1
        if !last.isEmpty {
            guard let value = number(last), value >= start else { return .whole }
            end = min(value, size - 1)
        }
        guard start < size else { return .unsatisfiable }
        return .part(start...end)
    }

    /// Decimal digits only; a value too large for Int is Int.max (past any image's end).
    static func number(_ text: String) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int(text) ?? Int.max
    }
}

extension StringProtocol {
    fileprivate var trimmed: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
