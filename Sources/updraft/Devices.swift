import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "Inspect the device registry, provision devices and set fleet facts: groups, development, locks.",
        subcommands: [List.self, Show.self, Provision.self, Revoke.self, Decommission.self, Lock.self, Unlock.self, Group.self, Dev.self])

    struct List: FleetCommand {
        static let configuration = CommandConfiguration(abstract: "List known devices with their groups and locks (filters combine).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this product.") var product: String?
        @Option(help: "Only devices that announced this version.") var version: String?
        @Option(help: "Only members of this group.") var group: String?
        @Flag(inversion: .prefixedNo, help: "Only online (--online) or offline (--no-online) devices.") var online: Bool?
        @Option(help: "Only devices whose active job is in this state, or idle (no active job).") var state: String?
        @Flag(help: "Print a JSON array (fields as `device show --json` without should_run, active_job and history).") var json = false

        func run(_ fleet: any FleetClient) async throws {
            let query = DeviceQuery(
                product: try product.map { try ProductID(validating: $0) }, version: try version.map { try FirmwareVersion(validating: $0) },
                group: try group.map { try GroupID(validating: $0) }, online: online, state: state)
            let devices = try await fleet.devices(query)
            if json { return print(try jsonText(devices)) }
            if !devices.isEmpty { print("DEVICE\tPRODUCT\tVERSION\tSTATUS\tLAST SEEN\tGROUPS") }
            if devices.isEmpty { print("No devices yet: they appear when they first connect (or when a release names them).") }
            for d in devices {
                var line = "\(d.id)\t\(d.product ?? "-")\t\(d.version ?? "-")\t\(d.online ? "online" : "offline")"
                line += "\t\(d.lastSeen.map { $0.formatted(.iso8601) } ?? "never")"
                line += "\tgroups \(d.groups.isEmpty ? "-" : d.groups.joined(separator: ","))"
                if d.development { line += "\tdevelopment" }
                if let revoked = d.revokedAt { line += "\trevoked \(revoked.formatted(.iso8601))" }
                if let lock = d.lock { line += "\tlocked \(lock)" }
                print(line)
            }
        }
    }

    struct Show: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a device: what it runs, what it should run and why, and its history.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String
        @Option(help: "History entries to show.") var history: Int = 20
        @Flag(help: "Print JSON: the `device list --json` fields and should_run, active_job, history (events).") var json = false

        func run(_ fleet: any FleetClient) async throws {
            let d = try await fleet.device(try DeviceID(validating: id), history: max(history, 0))
            if json { return print(try jsonText(d)) }
            print("device:      \(d.id)")
            print("product:     \(d.product ?? "unknown")")
            print("version:     \(d.version ?? "unknown")")
            print("status:      \(d.online ? "online" : "offline")\(d.acceptsUpdates ? "" : ", not accepting updates")")
            print("groups:      \(d.groups.isEmpty ? "-" : d.groups.joined(separator: ","))")
            print("development: \(d.development ? "yes" : "no")")
            if let revoked = d.revokedAt { print("revoked:     \(revoked.formatted(.iso8601)) (`updraft device provision \(d.id)` re-admits it)") }
            if let lock = d.lock { print("lock:        \(lock)\(d.lockNote.map { " (\($0))" } ?? "")") }
            print("should run:  \(d.shouldRun ?? "-")")
            if let job = d.activeJob {
                print("active job:  \(job.job) \(job.firmware) \(job.state) \(job.progress)% (release \(job.release))")
            }
            let events = d.history ?? []
            if !events.isEmpty { print("history:") }
            for event in events {
                var line = "  \(event.time.formatted(.iso8601))  \(event.kind.rawValue)"
                if let job = event.jobID { line += " \(job)" }
                if let to = event.to { line += " → \(to.rawValue)" }
                if let detail = event.detail { line += "  \(detail)" }
                print(line)
            }
        }
    }

    struct Lock: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lock a device to a firmware, above every release.",
            discussion: """
                The lock wins over every release (and over the development flag) until \
                `updraft device unlock`. By default an online device is updated at once; with \
                --at-next-session it is offered the firmware when it next connects. Locks skip the \
                verification gate and may downgrade: that is how a bench device gets a test build.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String
        @Argument(help: "Firmware id, PRODUCT@VERSION.") var firmware: String
        @Flag(help: "Update at the device's next session instead of now.") var atNextSession = false
        @Flag(help: "Lock a device id that never connected.") var allowUnknown = false

        func run(_ fleet: any FleetClient) async throws {
            let locked = try await fleet.lock(
                try DeviceID(validating: id), to: try FirmwareID(validating: firmware), atNextSession: atNextSession, allowUnknown: allowUnknown)
            print("device \(id): locked to \(locked) (\(atNextSession ? "at next session" : "now"))")
        }
    }

    struct Unlock: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a device's lock: it follows the release rules again.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String

        func run(_ fleet: any FleetClient) async throws {
            let lock = try await fleet.unlock(try DeviceID(validating: id))
            print("device \(id): unlocked (was \(lock ?? "-")); it follows the release rules again")
        }
    }

    struct Group: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a device to groups or remove it from them.",
            discussion: "Group releases (`updraft release create --groups`) reach the devices in their groups; the highest version released to any of a device's groups wins.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String
        @Option(help: "Groups to add, comma-separated.") var add: String?
        @Option(help: "Groups to remove, comma-separated.") var remove: String?

        func validate() throws {
            if add == nil && remove == nil { throw ValidationError("Give --add GROUP[,GROUP...] and/or --remove GROUP[,GROUP...].") }
        }

        func run(_ fleet: any FleetClient) async throws {
            let groups = try await fleet.setGroups(
                try DeviceID(validating: id), add: try add.map { try parseList($0, GroupID.self, flag: "--add") } ?? [],
                remove: try remove.map { try parseList($0, GroupID.self, flag: "--remove") } ?? [])
            print("device \(id): groups \(groups.isEmpty ? "-" : groups.joined(separator: ","))")
        }
    }

    struct Dev: FleetCommand {
        static let configuration = CommandConfiguration(
            commandName: "dev",
            abstract: "Mark a device as a development device (no automatic updates), or unmark it.",
            discussion: "Development devices get firmware only through a lock or a release that names them.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String
        @Flag(help: "Unmark: the device follows group and product releases again.") var off = false

        func run(_ fleet: any FleetClient) async throws {
            try await fleet.setDevelopment(try DeviceID(validating: id), !off)
            print("device \(id): \(off ? "no longer a development device" : "development device (no automatic updates)")")
        }
    }
}

extension DeviceCommand {
    struct Decommission: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Retire a device for good: cancel its job, revoke its credentials, clear its groups and lock.",
            discussion: """
                For a device that is scrapped, returned or stolen. Its active job is canceled now, so no \
                release waits for it; its MQTT password and CoAP key are removed (as `device revoke`), so \
                it cannot connect again; its groups, lock and development flag are cleared, so no rule \
                counts it. Its registry entry and job history stay as the record of what it ran, marked \
                revoked. `updraft device provision ID` admits it again (a repaired device). Events name \
                who did it.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String
        @Flag(help: "Print JSON: {device, canceled_job, revocation: {device, mqtt, coap, certificate, already_revoked}}.") var json = false

        func run(_ fleet: any FleetClient) async throws {
            let done = try await fleet.decommission(try DeviceID(validating: id))
            if json { return print(try jsonText(done)) }
            print("device \(id): decommissioned; \(done.canceledJob.map { "job \($0) canceled" } ?? "no active job")")
            print("credentials revoked; groups, lock and development flag cleared. `updraft device provision \(id)` re-admits it.")
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fleet statistics.", subcommands: [Versions.self])

    struct Versions: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Version distribution per product: the top versions, then the others.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this product.") var product: String?
        @Option(help: "How many versions to show before 'others'.") var top: Int = 5
        @Flag(help: "Print a JSON array of {product, total, versions: [{version, devices, fraction}], others, unknown}.") var json = false

        func run(_ fleet: any FleetClient) async throws {
            let rows = try await fleet.versionStats(product: try product.map { try ProductID(validating: $0) }, top: top)
            if json { return print(try jsonText(rows)) }
            if rows.isEmpty { print("No devices have announced a product yet.") }
            for row in rows {
                print("\(row.product): \(row.total) devices")
                for share in row.versions { print(ProgressBoard.bar(share.fraction, "\(share.version) \(share.devices)")) }
                if row.others > 0 { print(ProgressBoard.bar(Double(row.others) / Double(max(row.total, 1)), "others \(row.others)")) }
                if row.unknown > 0 { print("  unknown version: \(row.unknown)") }
            }
        }
    }
}
