import Foundation

/// What a fleet release targets. The target decides the release's precedence tier (see
/// ``DesiredFirmwareResolver``).
public enum FleetTarget: Sendable, Equatable, Codable {
    /// Every device of the product that nothing more specific claims.
    case productDefault(ProductID)
    /// Devices in any of these groups.
    case groups([GroupID])
    /// These devices, by name: an explicit per-device assignment.
    case devices([DeviceID])

    public var summary: String {
        switch self {
        case .productDefault(let product): "product default of \(product.rawValue)"
        case .groups(let groups): "groups " + groups.map(\.rawValue).joined(separator: ",")
        case .devices(let ids): "devices " + ids.map(\.rawValue).joined(separator: ",")
        }
    }
}

public enum FleetReleaseKind: String, Sendable, Codable, CaseIterable {
    /// An ordinary release; its firmware must be verified (or the release forced).
    case fleet
    /// Puts unverified firmware on chosen test devices so it can become verified.
    case verification
    /// Records a ``FirmwareLock``: it claims its device only through the device's lock.
    case lock
}

/// A release with fleet rules: a firmware, a target, how to pace it, and where its rollout
/// stands. The store persists it as JSON; the planner reads it and returns the new
/// ``rollout`` value whenever it changes.
public struct FleetRelease: Sendable, Equatable, Codable {
    public var id: ReleaseID
    public var kind: FleetReleaseKind
    public var firmware: FirmwareRef
    public var target: FleetTarget
    public var policy: BatchPolicy
    public var rollout: RolloutStateMachine
    public var allowDowngrade: Bool
    /// Set when the operator released firmware that was not verified, with `--force`: the
    /// verification status it had then, kept for the audit trail.
    public var forcedFrom: VerificationStatus?
    /// For static batches: the devices that matched when the release was created.
    public var staticMembers: [DeviceID]?
    public var createdAt: Date

    public init(
        id: ReleaseID = .random(), kind: FleetReleaseKind = .fleet, firmware: FirmwareRef, target: FleetTarget,
        policy: BatchPolicy = BatchPolicy(), rollout: RolloutPolicy = .single, allowDowngrade: Bool = false,
        forcedFrom: VerificationStatus? = nil, staticMembers: [DeviceID]? = nil, createdAt: Date
    ) {
        self.id = id
        self.kind = kind
        self.firmware = firmware
        self.target = target
        self.policy = policy
        self.rollout = RolloutStateMachine(policy: rollout, startsAt: policy.startTime(createdAt: createdAt))
        self.allowDowngrade = allowDowngrade
        self.forcedFrom = forcedFrom
        self.staticMembers = staticMembers.map { Array(Set($0)).sorted() }
        self.createdAt = createdAt
    }

    public var isForced: Bool { forcedFrom != nil }
    public var startsAt: Date { policy.startTime(createdAt: createdAt) }

    /// An operator command on the rollout (`updraft release advance|pause|resume|cancel`).
    /// Store the release and record the change when it returns one.
    public mutating func apply(_ command: RolloutStateMachine.Command, at now: Date) throws(UpdraftError) -> RolloutStateMachine.Change? {
        try rollout.apply(command, at: now, release: id)
    }

    /// Whether the release takes part in precedence at `now`: started, and not withdrawn.
    /// A paused release still claims its devices (it holds them while the operator looks);
    /// an aborted or canceled one lets them fall through to the next rule.
    public func isInForce(at now: Date) -> Bool {
        guard now >= startsAt else { return false }
        switch rollout.phase {
        case .running, .paused, .completed: return true
        case .aborted, .canceled: return false
        }
    }

    /// Whether the release, by its own target and batch options alone, would claim the
    /// device. Precedence between releases is ``DesiredFirmwareResolver``'s job.
    public func matches(_ device: FleetDevice) -> Bool {
        if kind == .lock { return false }
        if let product = device.device.product, product != firmware.product { return false }
        switch target {
        case .productDefault(let product):
            guard device.device.product == product else { return false }
        case .groups(let groups):
            // A group release only applies to devices known to be of its product.
            guard device.device.product != nil, groups.contains(where: { device.profile.isMember(of: $0) }) else { return false }
        case .devices(let ids):
            guard ids.contains(device.id) else { return false }
        }
        if let members = staticMembers, !members.contains(device.id) { return false }
        return policy.selects(device, release: id) && policy.acceptsSource(device.device.version, target: firmware.version)
    }
}

/// What an operator asks for with `updraft release create`.
public struct FleetReleaseRequest: Sendable, Equatable {
    public var id: ReleaseID
    public var kind: FleetReleaseKind
    public var firmware: FirmwareRef
    public var target: FleetTarget
    public var policy: BatchPolicy
    public var rollout: RolloutPolicy
    public var allowDowngrade: Bool
    /// Release even though the firmware is not verified; the release is recorded as forced.
    public var force: Bool

    public init(
        id: ReleaseID = .random(), kind: FleetReleaseKind = .fleet, firmware: FirmwareRef, target: FleetTarget,
        policy: BatchPolicy = BatchPolicy(), rollout: RolloutPolicy = .single, allowDowngrade: Bool = false, force: Bool = false
    ) {
        self.id = id
        self.kind = kind
        self.firmware = firmware
        self.target = target
        self.policy = policy
        self.rollout = rollout
        self.allowDowngrade = allowDowngrade
        self.force = force
    }
}

extension FleetRelease {
    /// Validates a request against the firmware's verification and the fleet as it is now,
    /// and builds the release (with the static members frozen, if the batch is static).
    /// Throws the error to show the operator.
    public static func make(
        _ request: FleetReleaseRequest, verification: FirmwareVerification, devices: [FleetDevice], now: Date
    ) throws(UpdraftError) -> FleetRelease {
        let firmware = request.firmware
        guard verification.firmwareID == firmware.id else {
            throw UpdraftError("verification_mismatch", "Internal: verification record of \(verification.firmwareID) given for \(firmware.id).")
        }
        try checkTargetAndKind(of: request)
        try request.policy.validate(now: now)
        try request.rollout.validate()

        var forcedFrom: VerificationStatus?
        if request.kind == .fleet {
            switch try verification.authorizeFleetRelease(force: request.force) {
            case .verified: break
            case .forced(let status): forcedFrom = status
            }
        }
        var policy = request.policy
        // A verification is a fixed set of test devices, and it must end so the gate can
        // decide: always static.
        if request.kind == .verification { policy.membership = .static }
        var release = FleetRelease(
            id: request.id, kind: request.kind, firmware: firmware, target: request.target, policy: policy,
            rollout: request.rollout, allowDowngrade: request.allowDowngrade, forcedFrom: forcedFrom, createdAt: now)
        if policy.membership == .static {
            // Matching ignores precedence on purpose: a member that is locked today and
            // unlocked tomorrow is still part of the batch it matched.
            var members = devices.filter { release.matches($0) }.map(\.id)
            // Named devices that never connected are members too: their job waits for them
            // (as with ``ReleasePlanner``), since the operator named them.
            if case .devices(let ids) = request.target {
                let known = Set(devices.map(\.id))
                members += ids.filter { !known.contains($0) }
            }
            release.staticMembers = Array(Set(members)).sorted()
        }
        return release
    }

    /// The target names something and fits the firmware's product; the kind is one a
    /// release can have.
    private static func checkTargetAndKind(of request: FleetReleaseRequest) throws(UpdraftError) {
        let firmware = request.firmware
        switch request.target {
        case .productDefault(let product) where product != firmware.product:
            throw UpdraftError(
                "product_mismatch",
                "Firmware \(firmware.id) is for product \(firmware.product), not \(product). Pick firmware of \(product) (see `updraft firmware list --product \(product)`).")
        case .groups(let groups) where groups.isEmpty:
            throw UpdraftError("invalid_target", "A group release needs at least one group: pass --groups GROUP[,GROUP...].")
        case .devices(let ids) where ids.isEmpty:
            throw UpdraftError("invalid_target", "A device release needs at least one device: pass --devices ID[,ID...].")
        default: break
        }
        switch request.kind {
        case .lock:
            throw UpdraftError(
                "invalid_kind", "A lock is not created as a release: use `updraft device lock DEVICE FIRMWARE` (see FleetRelease.lock).")
        case .verification:
            guard case .devices = request.target else {
                throw UpdraftError(
                    "invalid_target", "A \(request.kind.rawValue) release names its devices: pass --devices ID[,ID...].")
            }
        case .fleet:
            break
        }
    }

    /// The release that records a lock, and the lock to set on the device profile. Locks are
    /// explicit per-device decisions, so they skip the verification gate (that is how a
    /// developer gets new firmware onto a bench device) and may downgrade.
    public static func lock(
        device: DeviceID, firmware: FirmwareRef, delivery: LockDelivery, id: ReleaseID = .random(), now: Date
    ) -> (release: FleetRelease, lock: FirmwareLock) {
        let release = FleetRelease(
            id: id, kind: .lock, firmware: firmware, target: .devices([device]), policy: .lock(delivery),
            allowDowngrade: true, createdAt: now)
        return (release, FirmwareLock(releaseID: id, firmware: firmware, delivery: delivery, lockedAt: now))
    }
}
