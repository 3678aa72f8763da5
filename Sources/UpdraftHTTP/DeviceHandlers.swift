import Foundation
import OpenAPIRuntime
import UpdraftCore

/// Devices: the registry with filters, one device with its precedence explanation and
/// history, and the fleet facts an operator sets (lock, groups, development, decommission).
extension APIHandlers {
    func listDevices(_ input: Operations.ListDevices.Input) async throws -> Operations.ListDevices.Output {
        throw Problem.notImplemented
    }

    func getDevice(_ input: Operations.GetDevice.Input) async throws -> Operations.GetDevice.Output {
        throw Problem.notImplemented
    }

    func lockDevice(_ input: Operations.LockDevice.Input) async throws -> Operations.LockDevice.Output {
        throw Problem.notImplemented
    }

    func unlockDevice(_ input: Operations.UnlockDevice.Input) async throws -> Operations.UnlockDevice.Output {
        throw Problem.notImplemented
    }

    func setDeviceDevelopment(_ input: Operations.SetDeviceDevelopment.Input) async throws -> Operations.SetDeviceDevelopment.Output {
        throw Problem.notImplemented
    }

    func decommissionDevice(_ input: Operations.DecommissionDevice.Input) async throws -> Operations.DecommissionDevice.Output {
        throw Problem.notImplemented
    }

    func addGroupDevices(_ input: Operations.AddGroupDevices.Input) async throws -> Operations.AddGroupDevices.Output {
        throw Problem.notImplemented
    }

    func removeGroupDevices(_ input: Operations.RemoveGroupDevices.Input) async throws -> Operations.RemoveGroupDevices.Output {
        throw Problem.notImplemented
    }
}

extension Problem {
    /// Temporary: an operation of openapi.yaml whose handler is not built yet.
    static let notImplemented = Problem(status: .notImplemented, code: "not_implemented", detail: "This operation is not built yet.")
}
