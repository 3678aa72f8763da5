import Crypto
import CryptoExtras
import Foundation
import PrivateFiles
import UpdraftCore

#if canImport(Glibc)
import Glibc
#endif

/// The managed broker's accounts, in `<data>/credentials` (0700): mosquitto's password
/// file (`mosquitto.passwd`, hashes only) and the generated passwords of the gateway and
/// of the events consumer (`gateway.password`, `events.password`, 0600). A device's or a
/// backend consumer's password is shown once, when it is made, and only its hash is kept.
public struct BrokerCredentials: Sendable {
    public struct Account: Sendable, Codable, Equatable {
        public let username: String
        public let password: String
    }

    public let directory: String
    public let gatewayUser: String
    public var eventsUser: String { gatewayUser + "-events" }
    public var passwordFile: String { directory + "/mosquitto.passwd" }

    public init(directory: String, gatewayUser: String) {
        (self.directory, self.gatewayUser) = (directory, gatewayUser)
    }

    public init(configuration: UpdraftConfiguration) {
        self.init(directory: configuration.path("credentials"), gatewayUser: configuration.mqtt.username)
    }

    /// The gateway's account (the whole topic tree), made on first use.
    public func gateway() throws -> Account { try serviceAccount(gatewayUser, file: "gateway.password") }

    /// The events consumer's account (reads the event stream only), made on first use.
    public func events() throws -> Account { try serviceAccount(eventsUser, file: "events.password") }

    /// Writes the gateway's and the events consumer's hashes into the password file.
    public func prepareServiceAccounts() throws {
        let accounts = [try gateway(), try events()]
        try updatePasswordFile(accounts.map { ($0.username, Self.hash($0.password)) })
    }

    /// New passwords for `ids`, their hashes written into the password file (a device
    /// provisioned again gets a new password; the old one stops working at the broker's
    /// next reload).
    public func provision(_ ids: [DeviceID]) throws -> [Account] {
        try checkNotReserved(ids)
        let accounts = ids.map { Account(username: $0.rawValue, password: Self.newPassword()) }
        try updatePasswordFile(accounts.map { ($0.username, Self.hash($0.password)) })
        return accounts
    }

    /// Removes the lines of `ids` from the password file (`updraft device revoke`); returns
    /// the usernames that had one. The gateway's and the events consumer's are never removed.
    @discardableResult
    public func remove(_ ids: [DeviceID]) throws -> Set<String> {
        let gone = Set(ids.map(\.rawValue)).subtracting([gatewayUser, eventsUser])
        guard FileManager.default.fileExists(atPath: passwordFile) else { return [] }
        return try withLock {
            let entries = Self.entries(in: (try? String(contentsOfFile: passwordFile, encoding: .utf8)) ?? "")
            let removed = Set(entries.map(\.user)).intersection(gone)
            if !removed.isEmpty {
                try write(entries.filter { !gone.contains($0.user) }.map { "\($0.user):\($0.hash)\n" }.joined(), to: passwordFile)
            }
            return removed
        }
    }

    /// A device may not take the gateway's, the events consumer's or a backend consumer's
    /// name (a password or a certificate under it would open their topics).
    public func checkNotReserved(_ ids: [DeviceID]) throws {
        for id in ids where id.rawValue == gatewayUser || id.rawValue == eventsUser {
            throw UpdraftError("device_id_reserved", "'\(id)' is the broker account of the gateway or of the events consumer; give the device another id.")
        }
        let consumers = Set(consumerNames())
        for id in ids where consumers.contains(id.rawValue) {
            throw UpdraftError("device_id_reserved", "'\(id)' is a backend consumer's account (updraft credentials show); give the device another id.")
        }
    }

    /// The usernames the password file holds.
    public func provisionedUsers() -> Set<String> {
        Set(Self.entries(in: (try? String(contentsOfFile: passwordFile, encoding: .utf8)) ?? "").map(\.user))
    }

    /// mosquitto's PBKDF2-SHA512 format, as `mosquitto_passwd` (2.0) writes it:
    /// `$7$<iterations>$<base64 salt of 12 bytes>$<base64 hash of 64 bytes>`. 101 iterations
    /// is mosquitto's own default: the passwords are 192 random bits, beyond any guessing,
    /// and mosquitto checks the hash on its single thread at every connect of the fleet.
    static func hash(_ password: String, salt: [UInt8] = randomBytes(12), iterations: Int = 101) -> String {
        let key = try! KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha512, outputByteCount: 64, unsafeUncheckedRounds: iterations)
        let hash = key.withUnsafeBytes { Data($0).base64EncodedString() }
        return "$7$\(iterations)$\(Data(salt).base64EncodedString())$\(hash)"
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// 24 random bytes, base64url: 32 characters, no ':' (the password file's separator).
    static func newPassword() -> String {
        Data(randomBytes(24)).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }

    // MARK: Files

    private func serviceAccount(_ user: String, file: String) throws -> Account {
        try prepareDirectory()
        let path = directory + "/" + file
        return try withLock {
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                let password = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if !password.isEmpty { return Account(username: user, password: password) }
            }
            let password = Self.newPassword()
            try write(password + "\n", to: path)
            return Account(username: user, password: password)
        }
    }

    private func updatePasswordFile(_ hashes: [(user: String, hash: String)]) throws {
        try prepareDirectory()
        try withLock { try rewritePasswordFile(hashes) }
    }

    /// Replaces the lines of `hashes`' users, and drops `removing`'s; the caller holds the lock.
    func rewritePasswordFile(_ hashes: [(user: String, hash: String)], removing: Set<String> = []) throws {
        let text = (try? String(contentsOfFile: passwordFile, encoding: .utf8)) ?? ""
        var entries = Self.entries(in: text)
        let replaced = Dictionary(hashes.map { ($0.user, $0.hash) }, uniquingKeysWith: { _, last in last })
        entries.removeAll { replaced[$0.user] != nil || removing.contains($0.user) }
        entries += hashes.filter { replaced[$0.user] == $0.hash }.map { ($0.user, $0.hash) }
        try write(entries.map { "\($0.user):\($0.hash)\n" }.joined(), to: passwordFile)
    }

    static func entries(in text: String) -> [(user: String, hash: String)] {
        text.split(separator: "\n").compactMap { line -> (user: String, hash: String)? in
            let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { return nil }
            return (String(parts[0]), String(parts[1]))
        }
    }

    func prepareDirectory() throws {
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// Atomic, 0600 (see PrivateFile): mosquitto reloading meanwhile reads the old file or the new one.
    func write(_ text: String, to path: String) throws {
        try PrivateFile.replace(
            path, with: text,
            failure: UpdraftError("credentials_write_failed", "Cannot write \(path); check that \(directory) is writable by this user."))
    }

    /// The CLI and the gateway may write at once: one writer at a time.
    func withLock<T>(_ body: () throws -> T) throws -> T {
        try PrivateFile.withLock(
            directory + "/.lock",
            failure: UpdraftError("credentials_write_failed", "Cannot open \(directory)/.lock; check that \(directory) is writable by this user."),
            body)
    }
}
