import Foundation

/// The fleet read from the store in the shape the fleet rules take: what `updraft device
/// show` and `GET /v1/devices/{id}` explain, and what the CLI's fleet operations plan from.
extension StatusStore {
    /// The fleet as the store holds it, in the shape the fleet rules read.
    public func fleetSnapshot() async throws -> FleetSnapshot {
        let profiles = try await fleetProfiles()
        var sequences: [ProductID: [FirmwareVersion: Int64]] = [:]
        for firmware in try await firmwareList(product: nil) {
            sequences[firmware.product, default: [:]][firmware.version] = firmware.sequence
        }
        let devices = try await devices().map { device in
            FleetDevice(
                device: device, profile: profiles[device.id] ?? .default,
                versionSequence: device.product.flatMap { product in device.version.flatMap { sequences[product]?[$0] } })
        }
        let releases = try await fleetReleases()
        var jobs: [Job] = []
        for release in releases { jobs += try await self.jobs(release: release.id) }
        jobs += try await activeJobs()
        return FleetSnapshot(devices: devices, releases: releases, jobs: jobs)
    }

    /// Which firmware the rules give a device now, and why; `nil` when it is not in the registry.
    public func desiredFirmware(_ device: DeviceID, at now: Date = Date()) async throws -> (FleetDevice, DesiredFirmware)? {
        let fleet = try await fleetSnapshot()
        guard let entry = fleet.devices.first(where: { $0.id == device }) else { return nil }
        return (entry, DesiredFirmwareResolver.resolve(entry, releases: fleet.releases, at: now))
    }
}
