import Foundation
import OpenAPIRuntime

/// What a request that does not match openapi.yaml is told (`bad_request`): the part
/// that is wrong, in the API's own names, not the generated decoder's dump.
enum BadRequestDetail {
    static func detail(for error: ServerError) -> String {
        if let decoding = error.underlyingError as? DecodingError {
            // A query parameter's decoder knows no field name: name the request's parameters.
            if Self.codingPath(of: decoding).isEmpty, let query = error.request.path?.split(separator: "?", maxSplits: 1).dropFirst().first {
                let names = Set(query.split(separator: "&").map { String($0.split(separator: "=").first ?? "").prefix(40) }).sorted()
                let what = names.count == 1 ? "Query parameter '\(names[0])'" : "One of the query parameters (\(names.joined(separator: ", ")))"
                return detail(for: decoding, field: what)
            }
            return detail(for: decoding)
        }
        // The runtime's own errors say what is missing in one plain sentence.
        let text = String(describing: error.underlyingError)
        let plain = text.split(separator: "\n").first.map(String.init) ?? text
        return "The request does not match the API (GET /openapi.yaml): \(plain.prefix(200))"
    }

    static func detail(for error: DecodingError, field named: String? = nil) -> String {
        switch error {
        case .typeMismatch(let type, let context):
            return "\(named ?? field(context.codingPath)) must be \(kind(type))."
        case .valueNotFound(let type, let context):
            return "\(named ?? field(context.codingPath)) must be \(kind(type)), not null."
        case .keyNotFound(let key, let context):
            return "\(named ?? field(context.codingPath + [key])) is required."
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty, named == nil { return "The body is not valid JSON." }
            // Identifiers and enumerations decode through UpdraftCore, whose message says the rule.
            let reason = context.debugDescription.prefix(300)
            return "\(named ?? field(context.codingPath)) is not valid: \(reason)"
        @unknown default:
            return "The request does not match the API (GET /openapi.yaml)."
        }
    }

    static func codingPath(of error: DecodingError) -> [any CodingKey] {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context): context.codingPath
        case .keyNotFound(let key, let context): context.codingPath + [key]
        @unknown default: []
        }
    }

    /// `Field 'stages[2]'`, from the coding path (generated wrappers' keys left out).
    static func field(_ path: [any CodingKey]) -> String {
        var name = ""
        for key in path {
            if let index = key.intValue {
                name += "[\(index)]"
            } else if !key.stringValue.isEmpty, !key.stringValue.hasPrefix("value") {
                name += (name.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return name.isEmpty ? "A value" : "Field '\(name)'"
    }

    static func kind(_ type: Any.Type) -> String {
        switch type {
        case is any BinaryInteger.Type: "an integer"
        case is any BinaryFloatingPoint.Type: "a number"
        case is Bool.Type: "true or false"
        case is String.Type: "a string"
        default:
            String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }
}
