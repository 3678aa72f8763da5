import Foundation
import OpenAPIRuntime
import UpdraftCore

/// Fleet statistics (`updraft stats versions`).
extension APIHandlers {
    func getVersionStats(_ input: Operations.GetVersionStats.Input) async throws -> Operations.GetVersionStats.Output {
        throw Problem.notImplemented
    }
}
