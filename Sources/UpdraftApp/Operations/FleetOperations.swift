import Foundation
import Synchronization
import UpdraftCore

/// Fleet operations: releases with fleet rules, rollout commands, device profiles and the
/// verification gate. Each writes the store in one transaction and records an event; a
/// running gateway reloads what changed from the event log and its planner acts on it.
extension Operations {
    // MARK: Reading the fleet

    /// The fleet as the store holds it, in the shape the fleet rules read.
    public func fleetSnapshot() async throws -> FleetSnapshot { try await store.fleetSnapshot() }

    /// Where every device of a fleet release stands.
    public func fleetReleaseStatus(_ id: ReleaseID, at now: Date = Date()) async throws -> ReleaseStatus {
        guard let status = FleetStatus.release(id, fleet: try await fleetSnapshot(), at: now) else {
            throw UpdraftError.notFound("release", id.rawValue, hint: "List releases with `updraft release list`.")
        }
        return status
    }

    public func verification(of firmwareID: FirmwareID) async throws -> FirmwareVerification {
        let firmware = try await firmware(firmwareID)
        return try await store.verification(firmwareID: firmware.id) ?? FirmwareVerification(firmwareID: firmware.id)
    }

    // MARK: Releases

    /// Creates a fleet release: checks the verification gate and the options, freezes a
    /// static batch's members, and stores it. Jobs are created by the gateway's planner.
    public func createFleetRelease(_ request: FleetReleaseRequest, now: Date = Date()) async throws -> FleetRelease {
        let firmware = try await firmware(request.firmware.id)
        try checkImage(of: firmware)
        var request = request
        request.firmware = FirmwareRef(firmware)
        let verification = try await store.verification(firmwareID: firmware.id) ?? FirmwareVerification(firmwareID: firmware.id)
        let devices = try await fleetSnapshot().devices
        let release = try FleetRelease.make(request, verification: verification, devices: devices, now: now)
        var detail = "\(release.target.summary), \(release.policy.membership.rawValue) batch"
        if let members = release.staticMembers { detail += " of \(members.count) devices" }
        if let forced = release.forcedFrom { detail += ", forced (firmware was \(forced.rawValue))" }
        try await store.commit(
            StoreBatch(
                events: [UpdraftEvent(kind: .releaseCreated, time: now, releaseID: release.id, firmwareID: firmware.id, detail: detail, actor: actor.name)],
                fleetReleases: [release]))
        logger.info("created fleet release", metadata: ["release.id": "\(release.id)", "firmware.id": "\(firmware.id)"])
        return release
    }

    /// `updraft release pause|resume|advance|cancel`. Returns the change, or `nil` when the
    /// release already was where the command would put it.
    @discardableResult
    public func command(_ command: RolloutStateMachine.Command, release id: ReleaseID, now: Date = Date()) async throws
        -> RolloutStateMachine.Change?
    {
        let result = Box<RolloutStateMachine.Change?>(nil)
        let release = try await store.updateFleetRelease(id) { release in
            guard release.kind != .lock else {
                throw UpdraftError(
                    "release_is_lock", "Release \(id) records a lock; use `updraft device unlock DEVICE` instead.")
            }
            guard let change = try release.apply(command, at: now) else { return [] }
            result.set(change)
            return [
                UpdraftEvent(
                    kind: .fleetCommand, time: now, releaseID: id, firmwareID: release.firmware.id,
                    detail: "\(command.rawValue): \(change.summary)", actor: actor.name)
            ]
        }
        if release.kind == .verification, result.value == .canceled {
            try await store.updateVerification(firmwareID: release.firmware.id) { verification in
                guard case .statusChanged(let from, let to)? = verification.verificationCanceled(at: now) else { return StoreBatch() }
                return StoreBatch(events: [
                    UpdraftEvent(
                        kind: .verificationStatus, time: now, releaseID: id, firmwareID: release.firmware.id,
                        detail: "\(from.rawValue) -> \(to.rawValue)", actor: actor.name)
                ])
            }
        }
        return result.value
    }

    // MARK: Verification

    /// `updraft firmware verify`: starts a verification release to test devices.
    public func verifyFirmware(_ firmwareID: FirmwareID, devices ids: [DeviceID], now: Date = Date()) async throws -> FleetRelease {
        let firmware = try await firmware(firmwareID)
        let devices = try await fleetSnapshot().devices
        let releaseBox = Box<FleetRelease?>(nil)
        try await store.updateVerification(firmwareID: firmware.id) { verification in
            let id = ReleaseID.random()
            guard case .createVerificationRelease(let releaseID, let testDevices) = try verification.start(release: id, devices: ids, at: now)
            else { return StoreBatch() }
            let request = FleetReleaseRequest(
                id: releaseID, kind: .verification, firmware: FirmwareRef(firmware), target: .devices(testDevices),
                policy: BatchPolicy(membership: .static), allowDowngrade: false)
            let release = try FleetRelease.make(request, verification: verification, devices: devices, now: now)
            releaseBox.set(release)
            return StoreBatch(
                events: [
                    UpdraftEvent(
                        kind: .releaseCreated, time: now, releaseID: release.id, firmwareID: firmware.id,
                        detail: "verification on \(testDevices.count) devices", actor: actor.name),
                    UpdraftEvent(
                        kind: .verificationStatus, time: now, releaseID: release.id, firmwareID: firmware.id,
                        detail: "-> verifying", actor: actor.name),
                ],
                fleetReleases: [release])
        }
        return releaseBox.value!
    }

    // MARK: Devices

    /// Locks a device to a firmware (and records the lock's release), in one transaction.
    @discardableResult
    public func lock(_ device: DeviceID, to firmwareID: FirmwareID, delivery: LockDelivery, now: Date = Date()) async throws
        -> DeviceFleetProfile
    {
        let firmware = try await firmware(firmwareID)
        if let product = try await store.device(device)?.product, product != firmware.product {
            throw UpdraftError(
                "product_mismatch",
                "Firmware \(firmware.id) is for product \(firmware.product), but device \(device) is a \(product): it would never run it. Lock it to a firmware of \(product) (`updraft firmware list --product \(product)`).")
        }
        try checkImage(of: firmware)
        return try await store.updateFleetProfile(device) { profile in
            let (release, lock) = FleetRelease.lock(device: device, firmware: FirmwareRef(firmware), delivery: delivery, now: now)
            profile.lock = lock
            return StoreBatch(
                events: [
                    UpdraftEvent(
                        kind: .fleetCommand, time: now, deviceID: device, releaseID: release.id, firmwareID: firmware.id,
                        detail: "lock \(delivery == .now ? "now" : "at next session")", actor: actor.name)
                ],
                fleetReleases: [release])
        }
    }

    @discardableResult
    public func unlock(_ device: DeviceID, now: Date = Date()) async throws -> FirmwareLock? {
        let previous = Box<FirmwareLock?>(nil)
        try await store.updateFleetProfile(device) { profile in
            guard let lock = profile.unlock() else {
                throw UpdraftError("not_locked", "Device \(device) is not locked; nothing to unlock. See `updraft device show \(device)`.")
            }
            previous.set(lock)
            return StoreBatch(events: [UpdraftEvent(kind: .fleetCommand, time: now, deviceID: device, detail: "unlock", actor: actor.name)])
        }
        return previous.value
    }

    /// Adds the device to groups and removes it from others.
    @discardableResult
    public func setGroups(_ device: DeviceID, add: [GroupID], remove: [GroupID], now: Date = Date()) async throws -> DeviceFleetProfile {
        try await store.updateFleetProfile(device) { profile in
            for group in add { profile.add(to: group) }
            for group in remove { profile.remove(from: group) }
            return StoreBatch(events: [
                UpdraftEvent(
                    kind: .fleetCommand, time: now, deviceID: device,
                    detail: "groups \(profile.groups.map(\.rawValue).joined(separator: ","))", actor: actor.name)
            ])
        }
    }

    @discardableResult
    public func setDevelopment(_ device: DeviceID, _ on: Bool, now: Date = Date()) async throws -> DeviceFleetProfile {
        try await store.updateFleetProfile(device) { profile in
            profile.isDevelopment = on
            return StoreBatch(events: [
                UpdraftEvent(kind: .fleetCommand, time: now, deviceID: device, detail: on ? "development on" : "development off", actor: actor.name)
            ])
        }
    }

    /// Which firmware the rules give a device now, and why.
    public func desiredFirmware(_ device: DeviceID, now: Date = Date()) async throws -> (FleetDevice, DesiredFirmware) {
        guard let desired = try await store.desiredFirmware(device, at: now) else {
            throw UpdraftError.notFound("device", device.rawValue, hint: "List devices with `updraft device list`.")
        }
        return desired
    }
}

/// Carries a value out of a `@Sendable` store transaction body.
final class Box<T: Sendable>: Sendable {
    private let stored: Mutex<T>
    init(_ value: T) { stored = Mutex(value) }
    func set(_ value: T) { stored.withLock { $0 = value } }
    var value: T { stored.withLock { $0 } }
}
