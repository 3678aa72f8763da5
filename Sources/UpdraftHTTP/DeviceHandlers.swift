import Foundation
import OpenAPIRuntime
import UpdraftCore

/// Devices: the registry with filters, one device with its precedence explanation and
/// history (`updraft device list|show`), and the fleet facts an operator sets: lock,
/// development flag, decommission (groups: GroupHandlers).
extension APIHandlers {
    func listDevices(_ input: Operations.ListDevices.Input) async throws -> Operations.ListDevices.Output {
        let query = input.query
        let filter = DeviceFilter(
            product: try query.product.map { try ProductID(validating: $0) }, version: try query.version.map { try FirmwareVersion(validating: $0) },
            group: try query.group.map { try GroupID(validating: $0) }, online: query.online, state: query.state?.rawValue)
        let after = try query.cursor.map { try DeviceID(validating: $0) }
        let limit = try Self.limit(query.limit)
        let rows = try await DeviceRow.registry(backend.store).filter(filter.matches)
        let page = DevicePage(rows, after: after, limit: limit)
        return .ok(.init(body: .json(.init(devices: page.rows.map(Components.Schemas.Device.init), nextCursor: page.next?.rawValue))))
    }

    func getDevice(_ input: Operations.GetDevice.Input) async throws -> Operations.GetDevice.Output {
        let id = try DeviceID(validating: input.path.id)
        let history = input.query.history ?? 20
        guard (0...1000).contains(history) else {
            throw UpdraftError("invalid_history", "history must be 0 to 1000 events, not \(history).")
        }
        guard let (entry, desired) = try await backend.store.desiredFirmware(id) else {
            throw UpdraftError.notFound("device", id.rawValue, hint: "List devices with GET /v1/devices.")
        }
        let job = try await backend.store.activeJobs().first { $0.deviceID == id }
        let row = DeviceRow(device: entry.device, profile: entry.profile, job: job)
        let events = try await Self.history(of: id, last: history, in: backend.store)
        let detail = Components.Schemas.DeviceDetail.Value2Payload(
            shouldRun: desired.explanation, activeJob: job.map(Components.Schemas.Job.init), history: events.map(Components.Schemas.Event.init))
        return .ok(.init(body: .json(.init(value1: .init(row), value2: detail))))
    }

    /// The device's last `count` events but online and offline, oldest first (as `device show`).
    static func history(of id: DeviceID, last count: Int, in store: any StatusStore) async throws -> [UpdraftEvent] {
        var events: [UpdraftEvent] = []
        var cursor: Int64 = 0
        while count > 0 {
            let page = try await store.events(after: cursor, limit: 5000)
            events += page.filter { $0.deviceID == id && $0.kind != .deviceOnline && $0.kind != .deviceOffline }
            if events.count > count { events.removeFirst(events.count - count) }
            guard let last = page.last, page.count == 5000 else { break }
            cursor = last.sequence
        }
        return events
    }

    func lockDevice(_ input: Operations.LockDevice.Input) async throws -> Operations.LockDevice.Output {
        let (operations, actor) = try changes()
        let id = try DeviceID(validating: input.path.id)
        let body = switch input.body { case .json(let body): body }
        let firmware = try FirmwareID(validating: body.firmware)
        if body.allowUnknown != true { try await requireDevice(id, profiled: false) }
        let delivery: LockDelivery = body.delivery == .nextSession ? .nextSession : .now
        let profile = try await operations.lock(id, to: firmware, delivery: delivery, by: actor)
        return .ok(.init(body: .json(.init(id, profile))))
    }

    func unlockDevice(_ input: Operations.UnlockDevice.Input) async throws -> Operations.UnlockDevice.Output {
        let (operations, actor) = try changes()
        let id = try DeviceID(validating: input.path.id)
        try await requireDevice(id, profiled: true)
        let previous = try await operations.unlock(id, by: actor)
        var profile = Components.Schemas.DeviceProfile(id, try await backend.store.fleetProfiles()[id] ?? .default)
        profile.previousLock = previous?.firmware.id.rawValue
        return .ok(.init(body: .json(profile)))
    }

    func setDeviceDevelopment(_ input: Operations.SetDeviceDevelopment.Input) async throws -> Operations.SetDeviceDevelopment.Output {
        let (operations, actor) = try changes()
        let id = try DeviceID(validating: input.path.id)
        let body = switch input.body { case .json(let body): body }
        try await requireDevice(id, profiled: true)
        let profile = try await operations.setDevelopment(id, body.development, by: actor)
        return .ok(.init(body: .json(.init(id, profile))))
    }

    func decommissionDevice(_ input: Operations.DecommissionDevice.Input) async throws -> Operations.DecommissionDevice.Output {
        let (operations, actor) = try changes()
        let done = try await operations.decommission(try DeviceID(validating: input.path.id), by: actor)
        let revocation = Components.Schemas.Decommission.RevocationPayload(
            device: done.device.rawValue, mqtt: done.mqtt, coap: done.coap, certificate: done.certificate, alreadyRevoked: done.alreadyRevoked)
        return .ok(.init(body: .json(.init(device: done.device.rawValue, canceledJob: done.canceledJob?.rawValue, revocation: revocation))))
    }

    /// 404 unless the device is in the registry (or, with `profiled`, has fleet facts: a
    /// lock or groups set before it first connected).
    func requireDevice(_ id: DeviceID, profiled: Bool) async throws {
        if try await backend.store.device(id) != nil { return }
        if profiled, try await backend.store.fleetProfiles()[id] != nil { return }
        throw UpdraftError.notFound("device", id.rawValue, hint: "List devices with GET /v1/devices; lock a device before it first connects with \"allow_unknown\": true.")
    }
}

/// A registry entry with its fleet facts and its active job: what the list filters on.
struct DeviceRow {
    var device: Device
    var profile: DeviceFleetProfile
    var job: Job?

    static func registry(_ store: any StatusStore) async throws -> [DeviceRow] {
        let profiles = try await store.fleetProfiles()
        let jobs = Dictionary(try await store.activeJobs().map { ($0.deviceID, $0) }, uniquingKeysWith: { a, b in a.updatedAt >= b.updatedAt ? a : b })
        return try await store.devices().map { DeviceRow(device: $0, profile: profiles[$0.id] ?? .default, job: jobs[$0.id]) }
    }
}

/// The list's filters: every one given must hold.
struct DeviceFilter {
    var product: ProductID?
    var version: FirmwareVersion?
    var group: GroupID?
    var online: Bool?
    /// A job state, or `idle`: no active job.
    var state: String?

    func matches(_ row: DeviceRow) -> Bool {
        if let product, row.device.product != product { return false }
        if let version, row.device.version != version { return false }
        if let group, !row.profile.isMember(of: group) { return false }
        if let online, row.device.online != online { return false }
        if let state, (row.job?.state.rawValue ?? "idle") != state { return false }
        return true
    }
}

/// One page of rows by device id after a cursor: ids are unique and the order total, so
/// pages neither repeat nor skip a device.
struct DevicePage {
    var rows: [DeviceRow]
    var next: DeviceID?

    init(_ all: [DeviceRow], after: DeviceID?, limit: Int) {
        let matching = all.filter { after == nil || $0.device.id > after! }.sorted { $0.device.id < $1.device.id }
        rows = Array(matching.prefix(limit))
        next = matching.count > limit ? rows.last?.device.id : nil
    }
}
