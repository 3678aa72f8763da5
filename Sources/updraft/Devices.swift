import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "Inspect the device registry, provision devices and set fleet facts: groups, development, locks.",
        subcommands: [List.self, Show.self, Provision.self, Revoke.self, Lock.self, Unlock.self, Group.self, Dev.self])

    struct List: OperationsCommand {
        static let configuration = CommandConfiguration(abstract: "List known devices with their groups and locks.")
        @OptionGroup var global: GlobalOptions

        func run(_ ops: Operations) async throws {
            let profiles = try await ops.store.fleetProfiles()
            let devices = try await ops.store.devices()
            if devices.isEmpty { print("No devices yet: they appear when they first connect (or when a release names them).") }
            for d in devices {
                let profile = profiles[d.id] ?? .default
                var line = "\(d.id)\t\(d.product?.rawValue ?? "-")\t\(d.version?.rawValue ?? "-")\t\(d.online ? "online" : "offline")"
                line += "\t\(d.lastSeen.map { $0.formatted(.iso8601) } ?? "never")"
                line += "\tgroups \(profile.groups.isEmpty ? "-" : profile.groups.map(\.rawValue).joined(separator: ","))"
                if profile.isDevelopment { line += "\tdevelopment" }
                if let revoked = profile.revokedAt { line += "\trevoked \(revoked.formatted(.iso8601))" }
                if let lock = profile.lock { line += "\tlocked \(lock.firmware.id)" }
                print(line)
            }
        }
    }

    struct Show: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a device: what it runs, what it should run and why, and its history.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String
        @Option(help: "History entries to show.") var history: Int = 20

        func run(_ ops: Operations) async throws {
            let deviceID = try DeviceID(validating: id)
            let (entry, desired) = try await ops.desiredFirmware(deviceID)
            let d = entry.device
            print("device:      \(d.id)")
            print("product:     \(d.product?.rawValue ?? "unknown")")
            print("version:     \(d.version?.rawValue ?? "unknown")")
            print("status:      \(d.online ? "online" : "offline")\(d.acceptsUpdates ? "" : ", not accepting updates")")
            print("groups:      \(entry.profile.groups.isEmpty ? "-" : entry.profile.groups.map(\.rawValue).joined(separator: ","))")
            print("development: \(entry.profile.isDevelopment ? "yes" : "no")")
            if let revoked = entry.profile.revokedAt { print("revoked:     \(revoked.formatted(.iso8601)) (`updraft device provision \(d.id)` re-admits it)") }
            if let lock = entry.profile.lock {
                print("lock:        \(lock.firmware.id) (\(lock.delivery == .now ? "now" : "at next session"), since \(lock.lockedAt.formatted(.iso8601)))")
            }
            print("should run:  \(desired.explanation)")
            if let job = try await ops.store.activeJobs().first(where: { $0.deviceID == deviceID }) {
                print("active job:  \(job.id) \(job.firmwareID) \(job.state.rawValue) \(job.progress)% (release \(job.releaseID))")
            }
            var events: [UpdraftEvent] = []
            var cursor: Int64 = 0
            while true {
                let page = try await ops.store.events(after: cursor, limit: 5000)
                events += page.filter { $0.deviceID == deviceID && $0.kind != .deviceOnline && $0.kind != .deviceOffline }
                guard let last = page.last, page.count == 5000 else { break }
                cursor = last.sequence
            }
            if !events.isEmpty { print("history:") }
            for event in events.suffix(max(history, 0)) {
                var line = "  \(event.time.formatted(.iso8601))  \(event.kind.rawValue)"
                if let job = event.jobID { line += " \(job)" }
                if let to = event.to { line += " → \(to.rawValue)" }
                if let detail = event.detail { line += "  \(detail)" }
                print(line)
            }
        }
    }

    struct Lock: OperationsCommand {
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

        func run(_ ops: Operations) async throws {
            let device = try DeviceID(validating: id)
            if !allowUnknown, let unknown = UpdraftError.unknownDevices(try await ops.unknownDevices([device])) { throw unknown }
            let firmwareID = try FirmwareID(validating: firmware)
            let profile = try await ops.lock(device, to: firmwareID, delivery: atNextSession ? .nextSession : .now)
            print("device \(id): locked to \(profile.lock!.firmware.id) (\(atNextSession ? "at next session" : "now"))")
        }
    }

    struct Unlock: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a device's lock: it follows the release rules again.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String

        func run(_ ops: Operations) async throws {
            let lock = try await ops.unlock(try DeviceID(validating: id))
            print("device \(id): unlocked (was \(lock?.firmware.id.rawValue ?? "-")); it follows the release rules again")
        }
    }

    struct Group: OperationsCommand {
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

        func run(_ ops: Operations) async throws {
            let profile = try await ops.setGroups(
                try DeviceID(validating: id), add: try add.map { try parseList($0, GroupID.self, flag: "--add") } ?? [],
                remove: try remove.map { try parseList($0, GroupID.self, flag: "--remove") } ?? [])
            print("device \(id): groups \(profile.groups.isEmpty ? "-" : profile.groups.map(\.rawValue).joined(separator: ","))")
        }
    }

    struct Dev: OperationsCommand {
        static let configuration = CommandConfiguration(
            commandName: "dev",
            abstract: "Mark a device as a development device (no automatic updates), or unmark it.",
            discussion: "Development devices get firmware only through a lock or a release that names them.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Device id.") var id: String
        @Flag(help: "Unmark: the device follows group and product releases again.") var off = false

        func run(_ ops: Operations) async throws {
            try await ops.setDevelopment(try DeviceID(validating: id), !off)
            print("device \(id): \(off ? "no longer a development device" : "development device (no automatic updates)")")
        }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fleet statistics.", subcommands: [Versions.self])

    struct Versions: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Version distribution per product: the top versions, then the others.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this product.") var product: String?
        @Option(help: "How many versions to show before 'others'.") var top: Int = 5

        func run(_ ops: Operations) async throws {
            let devices = try await ops.store.devices()
            var products = Set(devices.compactMap(\.product)).sorted()
            if let product { products = [try ProductID(validating: product)] }
            if products.isEmpty { print("No devices have announced a product yet.") }
            for product in products {
                let sequences = Dictionary(
                    try await ops.store.firmwareList(product: product).map { ($0.version, $0.sequence) }, uniquingKeysWith: { a, _ in a })
                let d = FleetStatus.versionDistribution(product: product, devices: devices, top: top, sequenceOf: { sequences[$0] })
                print("\(product): \(d.total) devices")
                for share in d.top {
                    print(ProgressBoard.bar(share.fraction, "\(share.version) \(share.devices)"))
                }
                if d.others > 0 { print(ProgressBoard.bar(d.othersFraction, "others \(d.others)")) }
                if d.unknown > 0 { print("  unknown version: \(d.unknown)") }
            }
        }
    }
}
