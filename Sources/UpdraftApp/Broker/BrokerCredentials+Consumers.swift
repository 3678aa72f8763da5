import Foundation
import PrivateFiles
import UpdraftCore

/// A backend consumer's name: its broker username and client id.
public struct ConsumerName: ValidatedIdentifier {
    public static let kind = "consumer name"
    public static let maxLength = 64
    public let rawValue: String
    public init(unchecked: String) { rawValue = unchecked }
}

/// Backend consumers: one account each (`updraft credentials add-consumer`), reading the
/// event stream only. Their names are in `consumers` (0600, one per line), their hashes in
/// the password file; the broker's ACL gets a block per consumer (``BrokerACL``).
extension BrokerCredentials {
    var consumersFile: String { directory + "/consumers" }

    /// The consumers' names, in the order they were added.
    public func consumerNames() -> [String] {
        ((try? String(contentsOfFile: consumersFile, encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    /// A new password for consumer `name` (made if new; adding it again replaces the
    /// password), and the ACL of the broker in `brokerDirectory` rewritten to let it read
    /// the events. The name must not be the gateway's, the events account's or a device's.
    public func addConsumer(_ name: ConsumerName, brokerDirectory: String) throws -> Account {
        let user = name.rawValue
        guard user != gatewayUser, user != eventsUser else {
            throw UpdraftError("consumer_name_reserved", "'\(user)' is the broker account of the gateway or of the events consumer; choose another name.")
        }
        try prepareDirectory()
        return try withLock {
            var names = consumerNames()
            let passwords = Self.entries(in: (try? String(contentsOfFile: passwordFile, encoding: .utf8)) ?? "")
            if !names.contains(user), passwords.contains(where: { $0.user == user }) {
                throw UpdraftError("consumer_name_reserved", "'\(user)' is a provisioned device's account; choose another name.")
            }
            let account = Account(username: user, password: Self.newPassword())
            if !names.contains(user) { names.append(user) }
            try write(names.map { $0 + "\n" }.joined(), to: consumersFile)
            try rewritePasswordFile([(user, Self.hash(account.password))])
            try BrokerACL.write(directory: brokerDirectory, consumers: names)
            return account
        }
    }

    /// Removes consumer `name`: its password line, its ACL block. A running broker drops
    /// its connection when it reloads (the caller sends the SIGHUP).
    public func removeConsumer(_ name: ConsumerName, brokerDirectory: String) throws {
        try prepareDirectory()
        try withLock {
            var names = consumerNames()
            guard names.contains(name.rawValue) else {
                throw UpdraftError("consumer_unknown", "There is no consumer '\(name)'; `updraft credentials show` lists them.")
            }
            names.removeAll { $0 == name.rawValue }
            try write(names.map { $0 + "\n" }.joined(), to: consumersFile)
            try rewritePasswordFile([], removing: [name.rawValue])
            try BrokerACL.write(directory: brokerDirectory, consumers: names)
        }
    }

    /// Rewrites the ACL of the broker in `brokerDirectory` with today's consumers (the
    /// broker does at start), under the lock that add and remove hold.
    func writeConsumerACL(brokerDirectory: String) throws {
        try prepareDirectory()
        try withLock { try BrokerACL.write(directory: brokerDirectory, consumers: consumerNames()) }
    }
}

/// The managed broker's ACL: rendered by the broker at start from
/// Config/mosquitto.acl.template into `mosquitto.acl.base`, with `{{consumer_rules}}` left
/// in it, and one consumer's block into `consumer.acl.in` (`{{consumer}}` for its name).
/// Whoever changes the consumers (the broker at start, the CLI) writes `mosquitto.acl`
/// from these two: the CLI needs neither the dialect nor the configuration the gateway runs.
enum BrokerACL {
    static let basePath = "/mosquitto.acl.base"
    static let consumerBlockPath = "/consumer.acl.in"

    /// No base yet (the broker never started here): the broker writes the ACL at start.
    static func write(directory: String, consumers: [String]) throws {
        guard let base = try? String(contentsOfFile: directory + basePath, encoding: .utf8),
            let block = try? String(contentsOfFile: directory + consumerBlockPath, encoding: .utf8)
        else { return }
        let blocks = consumers.map { "user \($0)\n" + block.replacingOccurrences(of: "{{consumer}}", with: $0) }
        let text = base.replacingOccurrences(of: "{{consumer_rules}}", with: blocks.joined(separator: "\n"))
        try PrivateFile.replace(
            directory + "/mosquitto.acl", with: text,
            failure: UpdraftError("credentials_write_failed", "Cannot write \(directory)/mosquitto.acl; check that \(directory) is writable by this user."))
    }
}
