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

    struct Show: OperationsCommand {
        static let configuration = CommandConfiguration(abstract: "Show a job: its device, release, firmware, state and failure.")
        @Flag(help: "Print JSON: {job, release, device, firmware, target_version, state, progress, failure, detail, created_at, updated_at}.")
        var json = false
        @Argument(help: "Job id.") var id: String
        @OptionGroup var global: GlobalOptions

        func run(_ ops: Operations) async throws {
            guard let job = try await ops.store.job(try JobID(validating: id)) else {
                throw UpdraftError.notFound("job", id, hint: "Jobs are listed by `updraft release show RELEASE` and `updraft device show DEVICE`.")
            }
            let view = JobView(job)
            if json { return print(try jsonText(view)) }
            let fields: KeyValuePairs<String, String?> = [
                "job": view.job, "release": view.release, "device": view.device, "firmware": view.firmware,
                "state": "\(view.state) \(view.progress)%", "failure": view.failure, "detail": view.detail,
                "updated": view.updatedAt.formatted(.iso8601),
            ]
            for case let (name, value?) in fields { print("\(name):".padding(toLength: 10, withPad: " ", startingAt: 0) + value) }
        }
    }

    struct Cancel: OperationsCommand {
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

        func run(_ ops: Operations) async throws {
            let job = try await ops.cancelJob(try JobID(validating: id))
            if json { return print(try jsonText(JobView(job))) }
            print("job \(job.id): canceled (device \(job.deviceID), release \(job.releaseID))")
        }
    }
}

/// `job show --json`, and `active_job` in `device show --json`.
struct JobView: Encodable {
    var job, release, device, firmware, targetVersion, state: String
    var progress: Int
    var failure, detail: String?
    var createdAt, updatedAt: Date

    init(_ job: Job) {
        (self.job, release, device, firmware) = (job.id.rawValue, job.releaseID.rawValue, job.deviceID.rawValue, job.firmwareID.rawValue)
        (targetVersion, state, progress) = (job.targetVersion.rawValue, job.state.rawValue, job.progress)
        (failure, detail, createdAt, updatedAt) = (job.failure?.rawValue, job.detail, job.createdAt, job.updatedAt)
    }

    enum CodingKeys: String, CodingKey {
        case job, release, device, firmware, targetVersion = "target_version", state, progress, failure, detail
        case createdAt = "created_at", updatedAt = "updated_at"
    }
}
