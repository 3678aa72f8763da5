import Foundation
import OpenAPIRuntime
import UpdraftCore

/// Jobs: show one, cancel one (`updraft job show|cancel`).
extension APIHandlers {
    func getJob(_ input: Operations.GetJob.Input) async throws -> Operations.GetJob.Output {
        let id = try JobID(validating: input.path.id)
        guard let job = try await backend.store.job(id) else {
            throw UpdraftError.notFound("job", id.rawValue, hint: "Jobs are listed by GET /v1/releases/{id} and GET /v1/devices/{id}.")
        }
        return .ok(.init(body: .json(.init(job))))
    }

    /// One transaction (`StatusStore.updateJob`): a job that ended meanwhile is refused
    /// with 409 `job_finished`, and two cancels record one transition.
    func cancelJob(_ input: Operations.CancelJob.Input) async throws -> Operations.CancelJob.Output {
        let (operations, actor) = try changes()
        let job = try await operations.cancelJob(try JobID(validating: input.path.id), by: actor)
        return .ok(.init(body: .json(.init(job))))
    }
}
