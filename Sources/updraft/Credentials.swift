import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

/// `updraft device provision`: MQTT passwords and CoAP pre-shared keys for devices, shown once.
struct Provision: OperationsCommand {
    static let configuration = CommandConfiguration(
        abstract: "Give devices MQTT and CoAP credentials (a new password and DTLS pre-shared key, shown once).",
        discussion: """
            MQTT: username = device id; each password's hash goes into the managed broker's \
            password file (<data_dir>/credentials/mosquitto.passwd) and a running broker reloads it. \
            CoAP: PSK identity = device id; the key goes into the PSK file (coap.psk_file, \
            default <data_dir>/coap-psk.txt, 0600), which a running gateway re-reads. \
            Provisioning a device again replaces both: the old ones stop working. A revoked \
            device (`updraft device revoke`) is admitted again. \
            --cert also writes a client certificate of the fleet CA (pki.*) for the managed \
            broker's mutual-TLS port (mqtt.broker.mtls_port).
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Device ids.") var ids: [String]
    @Flag(help: "Print a JSON array of {username, password, coap_psk} (and certificate: {certificate, key, ca} with --cert).")
    var json = false
    @Flag(help: "Also write a client certificate signed by the fleet CA (CN = device id) for the mutual-TLS port: <out>/<id>.crt, <out>/<id>.key (0600) and <out>/ca.crt.")
    var cert = false
    @Option(help: "Folder for the --cert files.") var out: String = "."

    func run(_ ops: Operations) async throws {
        let ids = try ids.map { try DeviceID(validating: $0) }
        let devices = try await ops.admitDevices(ids, certificatesInto: cert ? out : nil)
        if json {
            print(try jsonText(devices))
            return
        }
        print("device\tmqtt_password\tcoap_psk")
        for device in devices { print("\(device.username)\t\(device.password)\t\(device.coapPSK)") }
        print("Store these on the devices now: only the passwords' hashes are kept, and the keys are in the gateway's PSK file.")
        for device in devices {
            guard let files = device.certificate else { continue }
            print("\(device.username): wrote \(files.certificate), \(files.key) (0600) and \(files.ca)")
        }
        if cert { print("Copy them to the devices and delete the .key files here: the devices connect with them on mqtt.broker.mtls_port.") }
    }
}

/// `updraft device revoke`: a device's credentials stop working and its job is canceled.
struct Revoke: OperationsCommand {
    static let configuration = CommandConfiguration(
        abstract: "Revoke devices: remove their MQTT password and CoAP key, cancel their active job.",
        discussion: """
            Takes effect within seconds, whether or not `updraft serve` runs (if not, at its \
            next start): the password line leaves the managed broker's password file and the \
            broker reloads it, which disconnects the device; its key leaves the PSK file, so \
            DTLS handshakes fail, and the gateway refuses what it sends over a session opened \
            before (device_revoked). Its client certificates go on the fleet CA's revocation \
            list: the broker reloads it and the device's MQTT session is taken over (only its \
            connection drops), and CoAP refuses the certificate at the DTLS handshake. Its active job is canceled with reason `revoked`, and a \
            device.revoked event records who did it. The device stays in the registry, marked \
            revoked; `updraft device provision` admits it again with new credentials.
            """)
    @Flag(help: "Print a JSON array of {device, mqtt, coap, certificate, already_revoked}.") var json = false
    @Argument(help: "Device ids.") var ids: [String]
    @OptionGroup var global: GlobalOptions

    func run(_ ops: Operations) async throws {
        let revoked = try await ops.revokeDevices(try ids.map { try DeviceID(validating: $0) })
        guard !json else { return print(try jsonText(revoked)) }
        for r in revoked {
            let removed = [r.mqtt ? "MQTT password" : nil, r.coap ? "CoAP key" : nil, r.certificate ? "client certificate (now on the CRL)" : nil]
                .compactMap { $0 }.joined(separator: " and ")
            print("device \(r.device): revoked\(r.alreadyRevoked ? " (already)" : "")\(removed.isEmpty ? "" : "; removed its " + removed)")
        }
    }
}

/// `updraft credentials show`: the accounts of the gateway and of the events consumer.
struct CredentialsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credentials", abstract: "The managed broker's service accounts.",
        subcommands: [Show.self, AddConsumer.self, RemoveConsumer.self])

    struct Show: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the gateway's and the events consumer's MQTT username and password.",
            discussion: """
                Generated on first use and kept 0600 in <data_dir>/credentials; `updraft serve` \
                reads the gateway's by itself. A backend reads <prefix>/events with the events \
                account (its username is also its client id).
                """)
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print a JSON object {gateway, events, consumers}.") var json = false

        struct Shown: Encodable {
            let gateway: BrokerCredentials.Account
            let events: BrokerCredentials.Account
            let consumers: [String]
        }

        func run(_ ops: Operations) async throws {
            let (gateway, events) = try ops.serviceAccounts()
            let consumers = ops.brokerCredentials.consumerNames()
            if json {
                print(try jsonText(Shown(gateway: gateway, events: events, consumers: consumers)))
            } else {
                print("gateway\t\(gateway.username)\t\(gateway.password)")
                print("events\t\(events.username)\t\(events.password)")
                // Only their hashes are kept: a consumer's password was shown when it was added.
                for name in consumers { print("consumer\t\(name)") }
            }
        }
    }

    struct AddConsumer: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give a backend consumer its own MQTT account for the event stream (password shown once).",
            discussion: """
                Username and client id = NAME; it may read <prefix>/events and nothing else. \
                Only the password's hash is kept (<data_dir>/credentials/mosquitto.passwd) and a \
                running managed broker reloads. Adding a consumer again gives it a new password.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The consumer's name (its username).") var name: String
        @Flag(help: "Print a JSON object {username, password}.") var json = false

        func run(_ ops: Operations) async throws {
            let account = try ops.addConsumer(try ConsumerName(validating: name))
            if json {
                print(try jsonText(account))
            } else {
                print("consumer\t\(account.username)\t\(account.password)")
                print("Store this password now: only its hash is kept.")
            }
        }
    }

    struct RemoveConsumer: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a backend consumer's account; a running managed broker disconnects it.")
        @Argument(help: "The consumer's name.") var name: String
        @OptionGroup var global: GlobalOptions

        func run(_ ops: Operations) async throws {
            try ops.removeConsumer(try ConsumerName(validating: name))
            print("Removed consumer \(name).")
        }
    }
}
