import Foundation
import OpenAPIRuntime
import UpdraftCore

/// Groups: many devices added to or removed from one group in a call (`updraft device
/// group`, one device at a time there). Every id is checked before anything changes.
extension APIHandlers {
    func addGroupDevices(_ input: Operations.AddGroupDevices.Input) async throws -> Operations.AddGroupDevices.Output {
        let (operations, actor) = try changes()
        let group = try GroupID(validating: input.path.group)
        let body = switch input.body { case .json(let body): body }
        let ids = try Self.distinctDevices(body.devices)
        if body.allowUnknown != true {
            var unknown: [DeviceID] = []
            for id in ids where try await backend.store.device(id) == nil { unknown.append(id) }
            if let refused = UpdraftError.unknownDevices(unknown) { throw refused }
        }
        let profiles = try await backend.store.fleetProfiles()
        var change = Components.Schemas.GroupChange(group: group.rawValue, changed: [], unchanged: [])
        for id in ids {
            if profiles[id]?.isMember(of: group) == true {
                change.unchanged.append(id.rawValue)
            } else {
                _ = try await operations.setGroups(id, add: [group], remove: [], by: actor)
                change.changed.append(id.rawValue)
            }
        }
        return .ok(.init(body: .json(change)))
    }

    func removeGroupDevices(_ input: Operations.RemoveGroupDevices.Input) async throws -> Operations.RemoveGroupDevices.Output {
        let (operations, actor) = try changes()
        let group = try GroupID(validating: input.path.group)
        let body = switch input.body { case .json(let body): body }
        let ids = try Self.distinctDevices(body.devices)
        let members = Set(try await backend.store.fleetProfiles().filter { $0.value.isMember(of: group) }.keys)
        guard !members.isEmpty else {
            throw UpdraftError.notFound("group", group.rawValue, hint: "No device is in it; a device's groups are listed by GET /v1/devices/{id}.")
        }
        var change = Components.Schemas.GroupChange(group: group.rawValue, changed: [], unchanged: [])
        for id in ids {
            if members.contains(id) {
                _ = try await operations.setGroups(id, add: [], remove: [group], by: actor)
                change.changed.append(id.rawValue)
            } else {
                change.unchanged.append(id.rawValue)
            }
        }
        return .ok(.init(body: .json(change)))
    }

    /// The ids, each valid, in the order given without repeats.
    static func distinctDevices(_ values: [String]) throws -> [DeviceID] {
        guard (1...1000).contains(values.count) else {
            throw UpdraftError("invalid_devices", "devices must name 1 to 1000 device ids, not \(values.count).")
        }
        var seen = Set<DeviceID>()
        return try values.map { try DeviceID(validating: $0) }.filter { seen.insert($0).inserted }
    }
}
