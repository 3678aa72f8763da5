import Foundation
import Mosquitto
import UpdraftCore
import UpdraftMQTT

extension Operations {
    /// The managed broker's accounts in this data directory.
    public var brokerCredentials: BrokerCredentials { BrokerCredentials(configuration: configuration) }

    /// Gives each device a new MQTT password (returned once, stored hashed) and makes a
    /// running managed broker of this data directory reload its password file.
    public func provisionDevices(_ ids: [DeviceID]) throws -> [BrokerCredentials.Account] {
        guard !ids.isEmpty else { return [] }
        let accounts = try brokerCredentials.provision(ids)
        ManagedBroker.reload(directory: configuration.path("broker"))
        return accounts
    }

    /// What `updraft device provision` gives a device, shown once: its MQTT password and
    /// its CoAP DTLS pre-shared key (identity = device id), for whichever protocol it speaks.
    public struct DeviceCredentials: Sendable, Codable, Equatable {
        public let username: String
        public let password: String
        public let coapPSK: String
        enum CodingKeys: String, CodingKey {
            case username, password
            case coapPSK = "coap_psk"
        }
    }

    /// A new MQTT password (see `provisionDevices`) and a new CoAP pre-shared key in the
    /// PSK file (`coap.psk_file`, re-read by a running gateway) for each device; the old
    /// ones stop working.
    public func provisionDeviceCredentials(_ ids: [DeviceID]) throws -> [DeviceCredentials] {
        let accounts = try provisionDevices(ids)
        let keys = try PSKFile.issue(for: ids.map(\.rawValue), path: configuration.resolvedPSKFile)
        return zip(accounts, keys).map { DeviceCredentials(username: $0.username, password: $0.password, coapPSK: $1) }
    }

    /// mosquitto reads its password file again when it gets to the SIGHUP; a device
    /// connecting before that would be refused. A broker started meanwhile (between our
    /// write and its pid file) is asked again.
    /// - Parameter port: nil: the configured one.
    public func waitUntilBrokerAccepts(_ account: BrokerCredentials.Account, port: Int? = nil) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        var attempts = 0
        while true {
            attempts += 1
            if attempts % 25 == 0 { ManagedBroker.reload(directory: configuration.path("broker")) }
            let port = port ?? configuration.mqtt.broker.port
            var options = MosquittoOptions(clientID: account.username, host: configuration.mqtt.broker.host, port: port)
            (options.username, options.password) = (account.username, account.password)
            let client = MosquittoClient(options: options, logger: logger)
            do {
                try await client.connect()
                await client.disconnect()
                return
            } catch {
                await client.disconnect()
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// A backend consumer's own account (see ``BrokerCredentials/addConsumer(_:brokerDirectory:)``);
    /// a running managed broker reloads and lets it in.
    public func addConsumer(_ name: ConsumerName) throws -> BrokerCredentials.Account {
        let account = try brokerCredentials.addConsumer(name, brokerDirectory: configuration.path("broker"))
        ManagedBroker.reload(directory: configuration.path("broker"))
        return account
    }

    /// Removes a backend consumer's account; a running managed broker reloads and disconnects it.
    public func removeConsumer(_ name: ConsumerName) throws {
        try brokerCredentials.removeConsumer(name, brokerDirectory: configuration.path("broker"))
        ManagedBroker.reload(directory: configuration.path("broker"))
    }

    /// The gateway's and the events consumer's accounts (made on first use).
    public func serviceAccounts() throws -> (gateway: BrokerCredentials.Account, events: BrokerCredentials.Account) {
        (try brokerCredentials.gateway(), try brokerCredentials.events())
    }
}

extension UpdraftConfiguration {
    /// Whether this gateway runs a broker that checks passwords (and generated them).
    public var managedBrokerAuthenticates: Bool { !mqtt.broker.external && mqtt.broker.authentication == .passwordFile }

    /// The gateway's MQTT connection; with the managed broker and no configured password,
    /// the generated one from the data directory.
    public func gatewayClientOptions() throws -> MosquittoOptions {
        var options = mqtt.clientOptions
        if managedBrokerAuthenticates && mqtt.password.isEmpty {
            options.password = try BrokerCredentials(configuration: self).gateway().password
        }
        return options
    }
}
