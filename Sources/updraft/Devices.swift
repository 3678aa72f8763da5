import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "Inspect the device registry, provision devices and set fleet facts: groups, development, locks.",
        subcommands: [List.self, Show.self, Provision.self, Revoke.self, Decommission.self, Lock.self, Unlock.self, Group.self, Dev.self])

    struct List: OperationsCommand {
        static let configuration = CommandConfiguration(abstract: "List known devices with their groups and locks.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print a JSON array (fields as `device show --json` without should_run, active_job and history).") var json = false

        func run(_ ops: Operations) async throws {
            let profiles = try await ops.store.fleetProfiles()
            let devices = try await ops.store.devices()
            if json { return print(try jsonText(devices.map { DeviceView($0, profiles[$0.id] ?? .default) })) }
            if !devices.isEmpty { print("DEVICE\tPRODUCT\tVERSION\tSTATUS\tLAST SEEN\tGROUPS") }
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
        @Flag(help: "Print JSON: the `device list --json` fields and should_run, active_job, history (events).") var json = false

        func run(_ ops: Operations) async throws {
            let deviceID = try DeviceID(validating: id)
            let (entry, desired) = try await ops.desiredFirmware(deviceID)
            let d = entry.device
            let activeJob = try await ops.store.activeJobs().first(where: { $0.deviceID == deviceID })
            var events: [UpdraftEvent] = []
            var cursor: Int64 = 0
            while true {
                let page = try await ops.store.events(after: cursor, limit: 5000)
                events += page.filter { $0.deviceID == deviceID && $0.kind != .deviceOnline && $0.kind != .deviceOffline }
                guard let last = page.last, page.count == 5000 else { break }
                cursor = last.sequence
            }
            if json {
                var view = DeviceView(d, entry.profile)
                view.shouldRun = desired.explanation
                view.activeJob = activeJob.map(JobView.init)
                view.history = Array(events.suffix(max(history, 0)))
                return print(try jsonText(view))
            }
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
            if let job = activeJob {
                print("active job:  \(job.id) \(job.firmwareID) \(job.state.rawValue) \(job.progress)% (release \(job.releaseID))")
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

extension DeviceCommand {
    struct Decommission: OperationsCommand {
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

        func run(_ ops: Operations) async throws {
            let done = try await ops.decommissionDevice(try DeviceID(validating: id))
            if json { return print(try jsonText(done)) }
            print("device \(id): decommissioned; \(done.canceledJob.map { "job \($0) canceled" } ?? "no active job")")
            print("credentials revoked; groups, lock and development flag cleared. `updraft device provision \(id)` re-admits it.")
        }
    }
}

/// `device list --json` rows and `device show --json`.
struct DeviceView: Encodable {
    var id: String
    var product, version, transport: String?
    var online, acceptsUpdates, development: Bool
    var firstSeen, lastSeen, revokedAt: Date?
    var groups: [String]
    var lock: String?
    var shouldRun: String?
    var activeJob: JobView?
    var history: [UpdraftEvent]?

    init(_ d: Device, _ profile: DeviceFleetProfile) {
        (id, product, version, transport) = (d.id.rawValue, d.product?.rawValue, d.version?.rawValue, d.transport?.rawValue)
        (online, acceptsUpdates, development) = (d.online, d.acceptsUpdates, profile.isDevelopment)
        (firstSeen, lastSeen, revokedAt) = (d.firstSeen, d.lastSeen, profile.revokedAt)
        (groups, lock) = (profile.groups.map(\.rawValue), profile.lock?.firmware.id.rawValue)
    }

    enum CodingKeys: String, CodingKey {
        case id, product, version, transport, online, acceptsUpdates = "accepts_updates", development
        case firstSeen = "first_seen", lastSeen = "last_seen", revokedAt = "revoked_at", groups, lock
        case shouldRun = "should_run", activeJob = "active_job", history
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
        @Flag(help: "Print a JSON array of {product, total, versions: [{version, devices, fraction}], others, unknown}.") var json = false

        struct ProductRow: Encodable {
            struct Share: Encodable { var version: String; var devices: Int; var fraction: Double }
            var product: String
            var total: Int
            var versions: [Share]
            var others, unknown: Int
        }

        func run(_ ops: Operations) async throws {
            let devices = try await ops.store.devices()
            var products = Set(devices.compactMap(\.product)).sorted()
            if let product { products = [try ProductID(validating: product)] }
            if products.isEmpty && !json { print("No devices have announced a product yet.") }
            var rows: [ProductRow] = []
            for product in products {
                let sequences = Dictionary(
                    try await ops.store.firmwareList(product: product).map { ($0.version, $0.sequence) }, uniquingKeysWith: { a, _ in a })
                let d = FleetStatus.versionDistribution(product: product, devices: devices, top: top, sequenceOf: { sequences[$0] })
                rows.append(
                    ProductRow(
                        product: product.rawValue, total: d.total,
                        versions: d.top.map { .init(version: $0.version.rawValue, devices: $0.devices, fraction: $0.fraction) },
                        others: d.others, unknown: d.unknown))
                if json { continue }
                print("\(product): \(d.total) devices")
                for share in d.top {
                    print(ProgressBoard.bar(share.fraction, "\(share.version) \(share.devices)"))
                }
                if d.others > 0 { print(ProgressBoard.bar(d.othersFraction, "others \(d.others)")) }
                if d.unknown > 0 { print("  unknown version: \(d.unknown)") }
            }
            if json { print(try jsonText(rows)) }
        }
    }
}
