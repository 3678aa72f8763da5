import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

/// `updraft job show|cancel`: one device's job of a release.
struct JobCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job", abstract: "Show or cancel one job (a device's update of a release).",
        discussion: "Job ids are listed by `updraft release show RELEASE` and `updraft device show DEVICE`.",
        subcommands: [Show.self, Cancel.self])

    struct Show: FleetCommand {
        static let configuration = CommandConfiguration(abstract: "Show a job: its device, release, firmware, state and failure.")
        @Flag(help: "Print JSON: {job, release, device, firmware, target_version, state, progress, failure, detail, created_at, updated_at}.")
        var json = false
        @Argument(help: "Job id.") var id: String
        @OptionGroup var global: GlobalOptions

        func run(_ fleet: any FleetClient) async throws {
            let view = try await fleet.job(try JobID(validating: id))
            if json { return print(try jsonText(view)) }
            let fields: KeyValuePairs<String, String?> = [
                "job": view.job, "release": view.release, "device": view.device, "firmware": view.firmware,
                "state": "\(view.state) \(view.progress)%", "failure": view.failure, "detail": view.detail,
                "updated": view.updatedAt.formatted(.iso8601),
            ]
            for case let (name, value?) in fields { print("\(name):".padding(toLength: 10, withPad: " ", startingAt: 0) + value) }
        }
    }

    struct Cancel: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a job that has not ended (a release to a mistyped device no longer waits forever).",
            discussion: """
                Works whether or not the gateway runs; a running gateway withdraws the offer from the \
                device at once. A job that already ended is refused (job_finished). A fleet release's \
                rules may plan the device again: pause or cancel the release, or lock the device, to stop \
                that. A job.transition and a fleet.command event record who did it.
                """)
        @Flag(help: "Print the canceled job as JSON (fields as `job show --json`).") var json = false
        @Argument(help: "Job id.") var id: String
        @OptionGroup var global: GlobalOptions

        func run(_ fleet: any FleetClient) async throws {
            let job = try await fleet.cancelJob(try JobID(validating: id))
            if json { return print(try jsonText(job)) }
            print("job \(job.job): canceled (device \(job.device), release \(job.release))")
        }
    }
}
