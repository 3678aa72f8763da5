import Foundation

/// Who asks for a change: recorded as `actor` on every event an operator's command records.
/// The local CLI is `cli:<os user>`; the HTTP API passes its token's name.
/// (Not `Actor`: that would shadow Swift's `Actor` protocol in every module importing the core.)
public struct ActorName: Sendable, Equatable, Hashable, CustomStringConvertible {
    public let name: String

    public init(_ name: String) { self.name = name }

    public var description: String { name }
}
