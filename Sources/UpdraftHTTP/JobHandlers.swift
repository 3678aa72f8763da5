import Foundation
import OpenAPIRuntime
import UpdraftCore

/// Jobs: show one, cancel one (`updraft job show|cancel`).
extension APIHandlers {
    func getJob(_ input: Operations.GetJob.Input) async throws -> Operations.GetJob.Output {
        throw Problem.notImplemented
    }

    func cancelJob(_ input: Operations.CancelJob.Input) async throws -> Operations.CancelJob.Output {
        throw Problem.notImplemented
    }
}
