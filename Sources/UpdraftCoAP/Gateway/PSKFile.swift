import Foundation
import PrivateFiles
import Synchronization
import UpdraftCore

/// Device pre-shared keys for CoAP over DTLS: one `<device id> <key>` per line, `#`
/// comments. Looked up on the CoAP loop thread during handshakes, so answers come from
/// memory; the file is re-read (at most once a second) when it changed, so keys added
/// to the file work without a restart.
public final class PSKFile: Sendable {
    public let path: String
    private struct State {
        var keys: [String: [UInt8]] = [:]
        var modified: Date?
        var checked: Date = .distantPast
    }
    private let state = Mutex(State())

    public init(path: String) {
        self.path = path
        reloadIfChanged(force: true)
    }

    /// An unknown identity checks the file at once (a device just provisioned); known
    /// ones at most once a second (a rotated key).
    public func key(for identity: String) -> [UInt8]? {
        reloadIfChanged(force: false)
        if let key = state.withLock({ $0.keys[identity] }) { return key }
        reloadIfChanged(force: false, throttled: false)
        return state.withLock { $0.keys[identity] }
    }

    public var count: Int { state.withLock { $0.keys.count } }

    /// The identities the file holds (as last read).
    public var identities: Set<String> { state.withLock { Set($0.keys.keys) } }

    private func reloadIfChanged(force: Bool, throttled: Bool = true) {
        let now = Date()
        let due = state.withLock { state -> Bool in
            guard force || !throttled || now.timeIntervalSince(state.checked) >= 1 else { return false }
            state.checked = now
            return true
        }
        guard due else { return }
        let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
        guard force || modified != state.withLock({ $0.modified }) else { return }
        let keys = (try? String(contentsOfFile: path, encoding: .utf8)).map(Self.parse) ?? [:]
        state.withLock {
            $0.keys = keys
            $0.modified = modified
        }
    }

    package static func parse(_ text: String) -> [String: [UInt8]] {
        var keys: [String: [UInt8]] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let (identity, key) = fields(of: line), !key.isEmpty, key.utf8.count <= 64 else { continue }
            keys[identity] = Array(key.utf8)
        }
        return keys
    }

    /// A line's identity and key (`nil` for a comment, a blank line or a lone word), split
    /// at the first space. Unicode scalars, not Characters: a space followed by a combining
    /// mark is one Character, and the line would be skipped (found by fuzzing).
    static func fields(of line: Substring) -> (identity: String, key: String)? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        let scalars = trimmed.unicodeScalars
        guard scalars.first != "#", let space = scalars.firstIndex(of: " ") else { return nil }
        let identity = String(scalars[..<space]).trimmingCharacters(in: .whitespaces)
        return (identity, String(scalars[scalars.index(after: space)...]).trimmingCharacters(in: .whitespaces))
    }

    /// Adds (or replaces) a device's key and returns it: 24 random URL-safe characters.
    public static func issue(for device: String, path: String) throws -> String {
        try issue(for: [device], path: path)[0]
    }

    /// Adds (or replaces) the keys of `devices` in one write and returns them in order:
    /// 24 random characters each (about 140 bits).
    public static func issue(for devices: [String], path: String) throws -> [String] {
        let keys = devices.map { _ in newKey() }
        try rewrite(path) { issuing(devices, keys, in: &$0) }
        let issued = Dictionary(zip(devices, keys), uniquingKeysWith: { _, last in last })
        return devices.map { issued[$0]! }
    }

    /// The edit `issue` makes: the lines of `devices` go, one line per device with its key
    /// is appended (a repeated id keeps its last key).
    package static func issuing(_ devices: [String], _ keys: [String], in lines: inout [(id: String?, line: String)]) {
        let issued = Dictionary(zip(devices, keys), uniquingKeysWith: { _, last in last })
        lines.removeAll { $0.id.map { issued[$0] != nil } ?? false }
        lines += devices.enumerated().filter { issued[$0.element] == keys[$0.offset] }.map { ($0.element, "\($0.element) \(keys[$0.offset])") }
    }

    /// Removes the keys of `devices` (`updraft device revoke`): a running gateway refuses
    /// their handshakes once it re-reads the file (at most a second). Returns the ids that
    /// had a key.
    @discardableResult
    public static func remove(_ devices: [String], path: String) throws -> Set<String> {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        var removed: Set<String> = []
        try rewrite(path) { removed = removing(Set(devices), in: &$0) }
        return removed
    }

    /// The edit `remove` makes: the lines of `gone` go; returns the ids that had a line.
    package static func removing(_ gone: Set<String>, in lines: inout [(id: String?, line: String)]) -> Set<String> {
        let removed = Set(lines.compactMap(\.id)).intersection(gone)
        lines.removeAll { $0.id.map(gone.contains) ?? false }
        return removed
    }

    /// Edits the file's lines (with the device id each names, nil for comments) under a
    /// lock (`<path>.lock`: the CLI and a gateway may write at once), written to a 0600
    /// temporary file renamed over the old one, so a gateway re-reading it sees the old
    /// file or the new one, never half of one, and never a file readable by others.
    private static func rewrite(_ path: String, _ edit: (inout [(id: String?, line: String)]) -> Void) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory.isEmpty ? "." : directory, withIntermediateDirectories: true)
        let lockFailure = UpdraftError("psk_write_failed", "Cannot open \(path).lock; check that \(directory) is writable by this user.")
        try PrivateFile.withLock(path + ".lock", failure: lockFailure) {
            let existing = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            try PrivateFile.replace(
                path, with: edited(existing, edit),
                failure: UpdraftError("psk_write_failed", "Cannot write \(path); check that \(directory) is writable by this user."))
        }
    }

    /// `text` split into lines (with the device id each names, nil for comments) by the same
    /// splitter as `parse`, so an edit removes exactly the lines the gateway reads; edited;
    /// joined again: what `rewrite` writes.
    package static func edited(_ text: String, _ edit: (inout [(id: String?, line: String)]) -> Void) -> String {
        var lines: [(id: String?, line: String)] = text.split(whereSeparator: \.isNewline).map { line in
            (fields(of: line)?.identity, String(line))
        }
        edit(&lines)
        return lines.map(\.line).joined(separator: "\n") + "\n"
    }

    private static func newKey() -> String {
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<24).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}
