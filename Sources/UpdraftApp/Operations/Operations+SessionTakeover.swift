import Foundation
import UpdraftCore

/// Dropping the MQTT connection of a revoked certificate device, and only it.
///
/// mosquitto 2.0's SIGHUP reloads the mutual-TLS listener's CRL (new handshakes of a
/// revoked certificate fail) but re-checks a connected certificate client only for a CN
/// (`mosquitto_security_apply_default`), so the device would stay connected. Every
/// listener forces client id = username (`use_username_as_clientid`), so a connection
/// that authenticates as the device takes its session over, and mosquitto closes the
/// device's connection ("already connected, closing old connection"), whichever listener
/// it came in on. The CLI gives the device's username a one-off password (random, in
/// memory only), reloads, connects with it once (clean session: the device's queued
/// messages go too), disconnects, and removes the line again. No other client notices.
extension Operations {
    /// Takes over the MQTT sessions of `ids` on a running managed broker (see above).
    /// The CRL must already list their certificates; it is checked before each signal
    /// (``reloadBroker()``).
    /// - Returns: the devices whose session was taken over (connected or not); empty when
    ///   no managed broker runs.
    func takeOverSessions(of ids: Set<DeviceID>) async throws -> Set<DeviceID> {
        guard !ids.isEmpty, managedBrokerDirectory.map({ ManagedBroker.runningPID(directory: $0) != nil }) == true else { return [] }
        let credentials = brokerCredentials
        let passwords = Dictionary(uniqueKeysWithValues: ids.map { ($0, BrokerCredentials.newPassword()) })
        try credentials.withLock {
            try credentials.rewritePasswordFile(passwords.map { ($0.key.rawValue, BrokerCredentials.hash($0.value)) })
        }
        defer {
            // A CLI killed before this leaves lines whose password nobody knows; the next
            // revoke of the device removes them.
            _ = try? credentials.remove(Array(ids))
            try? reloadBroker()
        }
        try reloadBroker()
        var taken: Set<DeviceID> = []
        await withTaskGroup(of: DeviceID?.self) { group in
            for (id, password) in passwords {
                // One connection as the device (clean session), retried until the broker
                // has reloaded the one-off password, then closed.
                group.addTask { (try? await self.waitUntilBrokerAccepts(.init(username: id.rawValue, password: password))) != nil ? id : nil }
            }
            for await id in group { if let id { taken.insert(id) } }
        }
        for id in ids.subtracting(taken) {
            logger.error("revoked device's MQTT session not taken over within the time allowed (is the broker overloaded?); run `updraft device revoke` for it again", metadata: ["device": "\(id)"])
        }
        return taken
    }

    /// Makes a running managed broker of this data directory re-read its files (SIGHUP),
    /// once the CRL in place is the fleet CA's: mosquitto 2.0 that cannot load the CRL at
    /// a reload goes on accepting every certificate, revoked ones included.
    /// - Returns: false when no managed broker runs.
    @discardableResult
    func reloadBroker() throws -> Bool {
        let pki = fleetPKI
        if pki.keepsCRL, FileManager.default.fileExists(atPath: pki.crlFile) { try pki.verifyCRL() }
        return ManagedBroker.reload(directory: configuration.path("broker"))
    }

    /// The managed broker's directory (nil with an external broker).
    var managedBrokerDirectory: String? { configuration.mqtt.broker.external ? nil : configuration.path("broker") }
}
