import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

struct ReleaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release",
        abstract: "Release firmware to devices.",
        subcommands: [Create.self, List.self, Show.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create one update job per target device.",
            discussion: """
                Online devices are offered the job at once; offline ones when they next connect, \
                also after a gateway restart. Devices already on the target version are skipped, \
                and so are devices with an active job (one job per device). Works whether or not \
                the gateway runs.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "Firmware id, PRODUCT@VERSION (see `updraft firmware list`).") var firmware: String
        @Option(help: "Comma-separated device ids.") var devices: String?
        @Option(help: "Every known device of this product.") var product: String?
        @Flag(help: "Allow releasing a lower sequence than a device runs.") var allowDowngrade = false

        func validate() throws {
            if (devices == nil) == (product == nil) {
                throw ValidationError("Give exactly one of --devices a,b,c or --product P.")
            }
        }

        func run() async throws {
            try await userFacing {
                let ops = try await global.operations()
                let target: ReleaseTarget
                if let devices {
                    let ids = try devices.split(separator: ",").map { try DeviceID(validating: $0.trimmingCharacters(in: .whitespaces)) }
                    guard !ids.isEmpty else { throw UpdraftError("no_devices", "--devices is empty.") }
                    target = .devices(ids)
                } else {
                    target = .product(try ProductID(validating: product!))
                }
                let plan = try await ops.createRelease(firmwareID: firmware, target: target, allowDowngrade: allowDowngrade)
                print("release: \(plan.release.id)")
                print("jobs:    \(plan.jobs.count)")
                for (device, reason) in plan.skipped { print("skipped \(device): \(reason.text)") }
                for device in plan.unknownDevices { print("note: \(device) has never connected; its job waits for it") }
                if plan.jobs.isEmpty { print("No device needs this firmware.") }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List releases, newest first.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await userFacing {
                let ops = try await global.operations()
                for release in try await ops.store.releases() {
                    print("\(release.id)\t\(release.firmwareID)\t\(release.target.summary)\t\(release.createdAt)")
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a release's jobs by state.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Release id.") var id: String

        func run() async throws {
            try await userFacing {
                let ops = try await global.operations()
                let jobs = try await ops.releaseStatus(try ReleaseID(validating: id))
                if jobs.isEmpty { throw UpdraftError.notFound("release", id, hint: "List releases with `updraft release list`.") }
                let counts = Dictionary(grouping: jobs, by: \.state).mapValues(\.count)
                for state in JobState.allCases where counts[state] != nil { print("\(state.rawValue): \(counts[state]!)") }
                for job in jobs {
                    var line = "\(job.deviceID)\t\(job.id)\t\(job.state.rawValue)\t\(job.progress)%"
                    if let failure = job.failure { line += "\t\(failure.rawValue): \(job.detail ?? "")" }
                    print(line)
                }
            }
        }
    }
}

struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device", abstract: "Inspect the device registry.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List known devices.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await userFacing {
                let ops = try await global.operations()
                for d in try await ops.store.devices() {
                    print("\(d.id)\t\(d.product?.rawValue ?? "-")\t\(d.version?.rawValue ?? "-")\t\(d.online ? "online" : "offline")\t\(d.lastSeen.map { "\($0)" } ?? "never")")
                }
            }
        }
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the event log as JSON lines.",
        discussion: "Every accepted job transition, refusal, release and device change, with a gap-free sequence number. Backends can also subscribe to the <prefix>/events MQTT topic.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Start after this sequence number.") var after: Int64 = 0
    @Flag(help: "Keep printing new events as they are committed.") var follow = false

    func run() async throws {
        try await userFacing {
            let ops = try await global.operations()
            var cursor = after
            while true {
                let events = try await ops.store.events(after: cursor, limit: 1000)
                for event in events {
                    print(event.jsonLine())
                    cursor = event.sequence
                }
                if events.count == 1000 { continue }
                guard follow else { return }
                fflush(nil)
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}
