import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

struct ReleaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release",
        abstract: "Release firmware to devices, and steer fleet rollouts.",
        discussion: """
            A fleet release (made when you pass --groups, --fleet or any batch or rollout option) \
            follows the fleet rules: precedence (lock > device list > groups > product default), the \
            verification gate, batches, schedules, retries and staged rollouts; the gateway's \
            planner creates and paces its jobs. Without those options, `release create` makes one \
            job per target device at once (a one-off release).
            """,
        subcommands: [Create.self, List.self, Show.self, Watch.self, Pause.self, Resume.self, Advance.self, Cancel.self])

    struct Create: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Release a firmware to devices, groups or a product.",
            discussion: """
                One-off: `--devices a,b` or `--product P` alone creates one job per target device now. \
                Online devices are offered the job at once; offline ones when they next connect. Devices \
                on the target version, and devices with an active job, are skipped.

                Fleet: add --fleet, --groups or any option below. `--product P` then sets the product \
                default; `--groups` releases to groups (the highest version released to a device's \
                groups wins); `--devices` names devices (wins over groups and defaults). The firmware \
                must be verified (`updraft firmware verify`), or pass --force. Examples:
                  updraft release create --firmware thermo@2.0 --product thermo --fleet
                  updraft release create --firmware thermo@2.0 --groups beta \\
                    --stages 10,50,100 --success-threshold 0.9 --error-threshold 0.2
                  updraft release create --firmware thermo@2.0 --product thermo \\
                    --source-versions 1.0,1.1 --static --rate 100 --max-retries 3 \\
                    --start-at 2026-12-01T02:00:00Z --retry-interval 5m

                Works whether or not the gateway runs; its planner acts on the release within \
                milliseconds when it does.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "Firmware id, PRODUCT@VERSION (see `updraft firmware list`).") var firmware: String
        @Option(help: "Comma-separated device ids.") var devices: String?
        @Option(help: "One-off: every known device of this product. Fleet: the product default.") var product: String?
        @Option(help: "Fleet: comma-separated groups (see `updraft device group`).") var groups: String?
        @Flag(help: "Make a fleet release even without other fleet options.") var fleet = false

        @Option(help: "Only devices in this group (comma-separated for several).") var selectGroup: String?
        @Option(help: "Only these devices, comma-separated.") var selectDevices: String?
        // .unconditional: "--percent -5" is a value to refuse with a reason, not a missing one.
        @Option(parsing: .unconditional, help: "Gray release: only this percentage (0-100] of the matching devices.") var percent: Double?
        @Option(help: "Only devices running one of these versions, comma-separated.") var sourceVersions: String?
        @Flag(help: "Static: only devices that match now. Dynamic (default): also devices that match later.")
        var membership: BatchPolicy.Membership?
        @Option(help: "Start at this time, ISO 8601 (2026-12-01T02:00:00Z).") var startAt: String?
        @Option(help: "Wait this long after a failure before retrying (seconds, or 30s, 5m, 1h).") var retryInterval: String?
        @Option(parsing: .unconditional, help: "Retries per device after a failure (0-10).") var maxRetries: Int?
        @Option(help: "Fail a device's job this long after its first progress report (seconds, or 30s, 5m, 1h).")
        var deviceTimeout: String?
        @Option(parsing: .unconditional, help: "At most this many offers per minute.") var rate: Int?
        @Flag(help: "Immediate (default): offer online devices now. Gradual: at each device's next session.")
        var delivery: BatchPolicy.Delivery?
        @Option(help: "Cumulative rollout stages in percent, ending at 100 (e.g. 1,10,50,100).") var stages: String?
        @Option(parsing: .unconditional, help: "Advance a stage once this fraction (0-1) of its devices succeeded.") var successThreshold: Double?
        @Option(parsing: .unconditional, help: "Stop once more than this fraction (0-1) of devices failed.") var errorThreshold: Double?
        @Option(help: "What the error threshold does: pause or abort.") var onError: RolloutPolicy.ErrorAction?
        @Option(help: "A stage runs at least this long before advancing on its own (seconds, or 30s, 5m, 1h).")
        var minStageDuration: String?
        @Flag(help: "Fleet: release firmware that is not verified (recorded as forced).") var force = false
        @Flag(help: "Allow releasing a lower sequence than a device runs.") var allowDowngrade = false
        @Flag(help: "Allow device ids that never connected (their jobs wait for them).") var allowUnknown = false
        @Flag(name: .shortAndLong, help: "Print only the release id (for scripts: R=$(updraft release create ... -q)).") var quiet = false

        func validate() throws {
            let targets = [devices, product, groups].compactMap { $0 }.count
            if targets != 1 {
                throw ValidationError("Give exactly one target: --devices a,b,c, --groups g1,g2 or --product P.")
            }
        }

        func run(_ fleet: any FleetClient) async throws {
            let created = try await fleet.createRelease(try order())
            if quiet { return print(created.release) }
            if created.kind == "one-off" { return printOneOff(created) }
            print("release: \(created.release)")
            if let release = created.fleet { printFleet(release) } else { print("kind:    \(created.kind)") }
            print("Follow it with `updraft release watch \(created.release)`.")
        }

        /// The options as the order `Operations` checks and carries out.
        func order() throws -> ReleaseOrder {
            let target: ReleaseOrder.Target
            if let devices {
                target = .devices(try parseList(devices, DeviceID.self, flag: "--devices"))
            } else if let groups {
                target = .groups(try parseList(groups, GroupID.self, flag: "--groups"))
            } else {
                target = .product(try ProductID(validating: product!))
            }
            var order = ReleaseOrder(firmware: try FirmwareID(validating: firmware), target: target)
            (order.fleet, order.force, order.allowDowngrade, order.allowUnknown) = (fleet, force, allowDowngrade, allowUnknown)
            order.selectGroups = try selectGroup.map { try parseList($0, GroupID.self, flag: "--select-group") }
            order.selectDevices = try selectDevices.map { try parseList($0, DeviceID.self, flag: "--select-devices") }
            order.percent = percent
            order.sourceVersions = try sourceVersions.map { try parseList($0, FirmwareVersion.self, flag: "--source-versions") }
            (order.membership, order.delivery) = (membership, delivery)
            if let startAt {
                guard let date = try? Date(startAt, strategy: .iso8601) else {
                    throw UpdraftError("invalid_start", "--start-at '\(startAt)' is not an ISO 8601 time; write it like 2026-12-01T02:00:00Z.")
                }
                order.startAt = date
            }
            order.retryInterval = try retryInterval.map { try seconds($0, flag: "--retry-interval") }
            order.maxRetries = maxRetries
            order.deviceTimeout = try deviceTimeout.map { try seconds($0, flag: "--device-timeout") }
            order.rate = rate
            order.stages = try stages.map { stages in
                try stages.split(separator: ",").map { part in
                    guard let value = Int(part.trimmingCharacters(in: .whitespaces)) else {
                        throw UpdraftError("invalid_stages", "--stages takes percentages like 1,10,50,100 (got '\(stages)').")
                    }
                    return value
                }
            }
            (order.successThreshold, order.errorThreshold, order.onError) = (successThreshold, errorThreshold, onError)
            order.minStageDuration = try minStageDuration.map { try seconds($0, flag: "--min-stage-duration") }
            return order
        }

        func printOneOff(_ plan: CreatedRelease) {
            print("release: \(plan.release)")
            print("jobs:    \(plan.jobs ?? 0)")
            for (device, reason) in plan.skipped { print("skipped \(device): \(reason)") }
            for device in plan.unknownDevices { print("note: \(device) has never connected; its job waits for it") }
            if plan.jobs ?? 0 == 0 { print("No device needs this firmware.") }
        }

        func printFleet(_ release: FleetRelease) {
            print("target:  \(release.target.summary)")
            print("batch:   \(release.policy.membership.rawValue)\(release.staticMembers.map { ", \($0.count) devices" } ?? "")")
            print("starts:  \(release.startsAt.formatted(.iso8601))")
            if release.rollout.policy.stages.count > 1 { print("stages:  \(release.rollout.policy.stages.map { "\($0)%" }.joined(separator: " → "))") }
            if let forced = release.forcedFrom { print("note: forced release of \(forced.rawValue) firmware (recorded)") }
        }
    }

    struct List: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "List releases, newest first.",
            discussion: "--json prints an array of {release, firmware, kind, target, phase, created_at}.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON instead of text.") var json = false

        func run(_ fleet: any FleetClient) async throws {
            let rows = try await fleet.releases()
            if json { return print(try jsonText(rows)) }
            if rows.isEmpty { return print("No releases yet. Create one with `updraft release create --firmware ID ...`.") }
            print("RELEASE\tFIRMWARE\tKIND: TARGET\tPHASE\tCREATED")
            for row in rows { print("\(row.release)\t\(row.firmware)\t\(row.kind): \(row.target)\t\(row.phase)\t\(row.createdAt.formatted(.iso8601))") }
        }
    }

    struct Show: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a release (fleet or one-off): devices per state and where each device stands.",
            discussion: """
                Pending devices say why they wait: scheduled, rollout stage, busy with another job, offline, \
                no consent, delivery (next session or rate), retry. --json prints one object (see README \
                "JSON output").
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Release id (see `updraft release list`).") var id: String
        @Flag(help: "Print JSON instead of text.") var json = false

        func run(_ fleet: any FleetClient) async throws {
            let view = try await fleet.releaseReport(try ReleaseID(validating: id))
            if json { print(try jsonText(view)) } else { view.printText() }
        }
    }

    struct Watch: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Watch a release (fleet or one-off) live: one progress bar per state.",
            discussion: """
                Redraws until the release completes, is aborted or canceled, or you press Ctrl-C. Bars show \
                the share of the release's devices in each state. Exit status: 0 when it completed with no \
                failed device, 2 when it ended aborted, canceled or with failed devices (the reason goes to \
                stderr), 1 on an error. --json prints one JSON object per redraw instead.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Release id (see `updraft release list`).") var id: String
        @Option(help: "Seconds between redraws.") var interval: Double = 1
        @Flag(help: "Draw once and exit.") var once = false
        @Flag(help: "Print JSON lines instead of bars.") var json = false

        func run(_ fleet: any FleetClient) async throws {
            let releaseID = try ReleaseID(validating: id)
            let board = ProgressBoard()
            while true {
                let view = try await fleet.releaseReport(releaseID)
                if json { print(try jsonText(view)) } else { board.draw(view.boardLines()) }
                fflush(nil)
                if view.finished, let trouble = view.trouble {
                    FileHandle.standardError.write(Data("\(trouble)\n".utf8))
                    throw ExitCode(2)
                }
                if once || view.finished { return }
                try await Task.sleep(for: .milliseconds(Int(max(interval, 0.1) * 1000)))
            }
        }
    }

    // One line each: what they do and their help are RolloutCommand's, by `command`.
    struct Pause: RolloutCommand { static let command = RolloutStateMachine.Command.pause; @OptionGroup var release: FleetReleaseArgument }
    struct Resume: RolloutCommand { static let command = RolloutStateMachine.Command.resume; @OptionGroup var release: FleetReleaseArgument }
    struct Advance: RolloutCommand { static let command = RolloutStateMachine.Command.advance; @OptionGroup var release: FleetReleaseArgument }
    struct Cancel: RolloutCommand { static let command = RolloutStateMachine.Command.cancel; @OptionGroup var release: FleetReleaseArgument }
}

/// The fleet release a rollout command acts on.
struct FleetReleaseArgument: ParsableArguments {
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Release id.") var id: String
}

private let rolloutCommandHelp: [RolloutStateMachine.Command: (abstract: String, discussion: String)] = [
    .pause: ("Pause a fleet release: no new devices, retries or first offers.", "Jobs already offered continue. Resume with `updraft release resume ID`."),
    .resume: ("Resume a paused fleet release.", "After an automatic pause on errors, failures from before the resume no longer count toward the threshold."),
    .advance: ("Move a staged rollout to its next stage now.", "Without a success threshold, stages only advance this way."),
    .cancel: (
        "Cancel a release for good (fleet or one-off).",
        "Fleet: jobs that have not finished downloading are canceled; installs in progress finish. Its devices fall back to the next rule (group, product default). A canceled verification returns the firmware to unverified. One-off: every job not finished yet is canceled (`updraft job cancel` cancels one)."
    ),
]

/// Pause, resume, advance and cancel: one rollout command on one fleet release.
protocol RolloutCommand: FleetCommand {
    static var command: RolloutStateMachine.Command { get }
    var release: FleetReleaseArgument { get }
}

extension RolloutCommand {
    static var configuration: CommandConfiguration {
        let help = rolloutCommandHelp[command]!
        return CommandConfiguration(abstract: help.abstract, discussion: help.discussion)
    }

    var global: GlobalOptions { release.global }

    func run(_ fleet: any FleetClient) async throws {
        let result = try await fleet.rollout(Self.command, release: try ReleaseID(validating: release.id))
        print("release \(release.id): \(result.summary)")
    }
}

func describe(_ rollout: RolloutStateMachine) -> String {
    "\(describe(rollout.phase)), stage \(rollout.stagePercent)%"
}

func parseList<T: ValidatedIdentifier>(_ text: String, _ type: T.Type, flag: String) throws -> [T] {
    let items = try text.split(separator: ",").map { try T(validating: $0.trimmingCharacters(in: .whitespaces)) }
    guard !items.isEmpty else { throw UpdraftError("empty_list", "\(flag) is empty; give one or more values separated by commas.") }
    return items
}

/// Seconds from "90", "90s", "5m", "2h" or "1d".
func seconds(_ text: String, flag: String) throws -> TimeInterval {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    var number = Substring(text.trimmingCharacters(in: .whitespaces))
    var unit = 1.0
    if let last = number.last, let factor = units[last] {
        unit = factor
        number = number.dropLast()
    }
    guard let value = Double(number), value >= 0 else {
        throw UpdraftError("invalid_duration", "\(flag) '\(text)' is not a duration; write seconds (90) or 30s, 5m, 2h, 1d.")
    }
    return value * unit
}

extension BatchPolicy.Membership: EnumerableFlag {}
extension BatchPolicy.Delivery: EnumerableFlag {}
extension RolloutPolicy.ErrorAction: ExpressibleByArgument {}
