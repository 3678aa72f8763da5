import Foundation
import Mosquitto
import UpdraftCoAP
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
        try reloadBroker()
        return accounts
    }

    /// What `updraft device provision` gives a device, shown once: its MQTT password and
    /// its CoAP DTLS pre-shared key (identity = device id), for whichever protocol it speaks.
    public struct DeviceCredentials: Sendable, Codable, Equatable {
        public let username: String
        public let password: String
        public let coapPSK: String
        /// With `--cert`: the files written for the device (its certificate and key, the CA).
        public var certificate: CertificateFiles?
        enum CodingKeys: String, CodingKey {
            case username, password, certificate
            case coapPSK = "coap_psk"
        }
    }

    /// A new MQTT password (see `provisionDevices`) and a new CoAP pre-shared key in the
    /// PSK file (`coap.psk_file`, re-read by a running gateway) for each device; the old
    /// ones stop working.
    public func provisionDeviceCredentials(_ ids: [DeviceID]) throws -> [DeviceCredentials] {
        let accounts = try provisionDevices(ids)
        let keys = try PSKFile.issue(for: ids.map(\.rawValue), path: configuration.resolvedPSKFile)
        return zip(accounts, keys).map { DeviceCredentials(username: $0.username, password: $0.password, coapPSK: $1, certificate: nil) }
    }

    /// mosquitto reads its password file again when it gets to the SIGHUP; a device
    /// connecting before that would be refused. A broker started meanwhile (between our
    /// write and its pid file) is asked again.
    /// - Parameter port: nil: the one ``UpdraftConfiguration/brokerOptions(clientID:)`` gives.
    public func waitUntilBrokerAccepts(_ account: BrokerCredentials.Account, port: Int? = nil) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        var attempts = 0
        while true {
            attempts += 1
            if attempts % 25 == 0 { try reloadBroker() }
            var options = configuration.brokerOptions(clientID: account.username)
            if let port { options.port = port }
            (options.username, options.password) = (account.username, account.password)
            let client = MosquittoClient(options: options, logger: logger)
            do {
                // Short attempts, each with a new client: a broker still starting refuses
                // the first ones, and a TLS client that met a refused port may not recover.
                try await client.connect(timeout: .seconds(2))
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
        try reloadBroker()
        return account
    }

    /// Removes a backend consumer's account; a running managed broker reloads and disconnects it.
    public func removeConsumer(_ name: ConsumerName) throws {
        try brokerCredentials.removeConsumer(name, brokerDirectory: configuration.path("broker"))
        try reloadBroker()
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
        if !mqtt.broker.external {
            let local = brokerOptions(clientID: options.clientID)
            (options.host, options.port, options.tls) = (local.host, local.port, local.tls)
        }
        if managedBrokerAuthenticates && mqtt.password.isEmpty {
            options.password = try BrokerCredentials(configuration: self).gateway().password
        }
        return options
    }
}

extension UpdraftConfiguration {
    /// How a client on this machine (the gateway, `updraft sim`, the demo's devices, the
    /// tests) reaches the broker with a password. Managed broker: its plain listener on
    /// 127.0.0.1 when `plain_port` is set (the operator asked for plain MQTT on loopback,
    /// where TLS protects nothing from this machine's root and costs the broker CPU per
    /// message), otherwise TLS on `tls_port`, verified against the fleet CA. External
    /// broker: `host:port` with `mqtt.broker.tls` (the server check only: the gateway's
    /// client certificate, if any, is not handed to others).
    public func brokerOptions(clientID: String) -> MosquittoOptions {
        let broker = mqtt.broker
        var options = MosquittoOptions(clientID: clientID)
        if broker.external {
            (options.host, options.port) = (broker.host, broker.port)
            if broker.tls.enabled {
                options.tls = .init(caFile: broker.tls.caFile.isEmpty ? nil : broker.tls.caFile, insecure: broker.tls.insecure)
            }
        } else if broker.plainPort != 0 {
            (options.host, options.port) = ("127.0.0.1", broker.plainPort)
        } else {
            (options.host, options.port) = (brokerTLSHost, broker.tlsPort)
            options.tls = .init(caFile: FleetPKI(configuration: self).caFile)
        }
        return options
    }

    /// A certificate device's connection to the managed broker's mutual-TLS listener.
    public func mutualTLSOptions(clientID: String, certFile: String, keyFile: String) -> MosquittoOptions {
        var options = MosquittoOptions(clientID: clientID, host: brokerTLSHost, port: mqtt.broker.mtlsPort)
        options.tls = .init(caFile: FleetPKI(configuration: self).caFile, certFile: certFile, keyFile: keyFile)
        return options
    }

    /// Where this machine reaches the managed broker's TLS listeners.
    var brokerTLSHost: String { BrokerListeners.reachable(mqtt.broker.tlsHost) }
}
