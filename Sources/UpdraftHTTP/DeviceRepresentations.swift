import Foundation
import UpdraftCore

// The JSON forms of devices, their fleet facts and jobs (schemas in openapi.yaml's
// devices/jobs block); field for field those of `updraft device|job show --json`.

extension Components.Schemas.Device {
    init(_ row: DeviceRow) {
        let (device, profile) = (row.device, row.profile)
        self.init(
            id: device.id.rawValue, product: device.product?.rawValue, version: device.version?.rawValue, online: device.online,
            acceptsUpdates: device.acceptsUpdates, transport: device.transport?.rawValue, firstSeen: device.firstSeen,
            lastSeen: device.lastSeen, development: profile.isDevelopment, groups: profile.groups.map(\.rawValue),
            lock: profile.lock?.firmware.id.rawValue, revokedAt: profile.revokedAt, jobState: row.job?.state.rawValue)
    }
}

extension Components.Schemas.DeviceProfile {
    init(_ id: DeviceID, _ profile: DeviceFleetProfile) {
        self.init(
            device: id.rawValue, groups: profile.groups.map(\.rawValue), development: profile.isDevelopment,
            lock: profile.lock?.firmware.id.rawValue, lockDelivery: profile.lock.map { $0.delivery == .now ? .now : .nextSession },
            lockedAt: profile.lock?.lockedAt, revokedAt: profile.revokedAt)
    }
}

extension Components.Schemas.Job {
    init(_ job: Job) {
        self.init(
            job: job.id.rawValue, release: job.releaseID.rawValue, device: job.deviceID.rawValue, firmware: job.firmwareID.rawValue,
            targetVersion: job.targetVersion.rawValue, state: job.state.rawValue, progress: job.progress, failure: job.failure?.rawValue,
            detail: job.detail, createdAt: job.createdAt, updatedAt: job.updatedAt)
    }
}
