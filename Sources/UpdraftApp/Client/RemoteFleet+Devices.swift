import Foundation
import OpenAPIRuntime
import UpdraftCore
import UpdraftHTTP

extension RemoteFleet {
    public func devices(_ query: DeviceQuery) async throws -> [DeviceView] {
        var rows: [DeviceView] = []
        var cursor: String?
        repeat {
            let page = try await call {
                try await client.listDevices(
                    query: .init(
                        product: query.product?.rawValue, version: query.version?.rawValue, group: query.group?.rawValue, online: query.online,
                        state: try query.state.map { try Self.stateFilter($0) }, cursor: cursor, limit: 1000)
                ).ok.body.json
            }
            rows += try page.devices.map { try convert($0) }
            cursor = page.nextCursor
        } while cursor != nil
        return rows
    }

    static func stateFilter(_ state: String) throws -> Components.Schemas.DeviceJobStateFilter {
        guard let filter = Components.Schemas.DeviceJobStateFilter(rawValue: state) else {
            throw UpdraftError("invalid_state", "--state '\(state)' is not idle or an active job state (queued, notified, downloading, downloaded, verified, installing, installed).")
        }
        return filter
    }

    public func device(_ id: DeviceID, history: Int) async throws -> DeviceView {
        try convert(try await call { try await client.getDevice(path: .init(id: id.rawValue), query: .init(history: history)).ok.body.json })
    }

    public func lock(_ id: DeviceID, to firmware: FirmwareID, atNextSession: Bool, allowUnknown: Bool) async throws -> String {
        let body = Components.Schemas.DeviceLockRequest(
            firmware: firmware.rawValue, delivery: atNextSession ? .nextSession : .now, allowUnknown: allowUnknown)
        let profile = try await call { try await client.lockDevice(path: .init(id: id.rawValue), body: .json(body)).ok.body.json }
        return profile.lock ?? firmware.rawValue
    }

    public func unlock(_ id: DeviceID) async throws -> String? {
        try await call { try await client.unlockDevice(path: .init(id: id.rawValue)).ok.body.json }.previousLock
    }

    /// The API changes a group's members; the CLI one device's groups: one call per group.
    public func setGroups(_ id: DeviceID, add: [GroupID], remove: [GroupID]) async throws -> [String] {
        for group in add {
            let body = Components.Schemas.GroupDevicesRequest(devices: [id.rawValue], allowUnknown: true)
            _ = try await call { try await client.addGroupDevices(path: .init(group: group.rawValue), body: .json(body)).ok }
        }
        for group in remove {
            let body = Components.Schemas.GroupDevicesRequest(devices: [id.rawValue])
            _ = try await call { try await client.removeGroupDevices(path: .init(group: group.rawValue), body: .json(body)).ok }
        }
        return try await device(id, history: 0).groups
    }

    public func setDevelopment(_ id: DeviceID, _ on: Bool) async throws {
        _ = try await call { try await client.setDeviceDevelopment(path: .init(id: id.rawValue), body: .json(.init(development: on))).ok }
    }

    public func decommission(_ id: DeviceID) async throws -> Operations.Decommission {
        try convert(try await call { try await client.decommissionDevice(path: .init(id: id.rawValue)).ok.body.json })
    }

    public func job(_ id: JobID) async throws -> JobView {
        try convert(try await call { try await client.getJob(path: .init(id: id.rawValue)).ok.body.json })
    }

    public func cancelJob(_ id: JobID) async throws -> JobView {
        try convert(try await call { try await client.cancelJob(path: .init(id: id.rawValue)).ok.body.json })
    }

    public func versionStats(product: ProductID?, top: Int) async throws -> [VersionStatsRow] {
        try convert(try await call { try await client.getVersionStats(query: .init(product: product?.rawValue, top: top)).ok.body.json.products })
    }
}
