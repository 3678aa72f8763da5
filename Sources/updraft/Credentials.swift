import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

/// `updraft device provision`: MQTT passwords for devices, shown once.
struct Provision: OperationsCommand {
    static let configuration = CommandConfiguration(
        abstract: "Give devices MQTT credentials (username = device id, a new password shown once).",
        discussion: """
            Writes each password's hash into the managed broker's password file \
            (<data_dir>/credentials/mosquitto.passwd) and makes a running broker reload it. \
            Provisioning a device again replaces its password: the old one stops working.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Device ids.") var ids: [String]
    @Flag(help: "Print a JSON array of {username, password}.") var json = false

    func run(_ ops: Operations) async throws {
        let accounts = try ops.provisionDevices(try ids.map { try DeviceID(validating: $0) })
        if json {
            print(try jsonText(accounts))
        } else {
            for account in accounts { print("\(account.username)\t\(account.password)") }
            print("Store these passwords on the devices now: only their hashes are kept.")
        }
    }
}

/// `updraft credentials show`: the accounts of the gateway and of the events consumer.
struct CredentialsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credentials", abstract: "The managed broker's service accounts.", subcommands: [Show.self])

    struct Show: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the gateway's and the events consumer's MQTT username and password.",
            discussion: """
                Generated on first use and kept 0600 in <data_dir>/credentials; `updraft serve` \
                reads the gateway's by itself. A backend reads <prefix>/events with the events \
                account (its username is also its client id).
                """)
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print a JSON object {gateway, events}.") var json = false

        func run(_ ops: Operations) async throws {
            let (gateway, events) = try ops.serviceAccounts()
            if json {
                print(try jsonText(["gateway": gateway, "events": events]))
            } else {
                print("gateway\t\(gateway.username)\t\(gateway.password)")
                print("events\t\(events.username)\t\(events.password)")
            }
        }
    }
}

private func jsonText<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
