import Foundation
import UpdraftCore

// What the fleet commands print with --json, one shape whether read locally or over the
// API. Fields the API does not carry are optional and absent remotely (README "Remote CLI").

/// `firmware show --json` and each element of `firmware list --json`. Remote: no md5,
/// verified_by or failed_devices (the API's FirmwareDetail has none).
public struct FirmwareView: Codable, Sendable, Equatable {
    public var id, product, version: String
    public var sequence, size: Int64
    public var sha256: String
    public var md5: String?
    public var createdAt: Date
    public var verification: String
    public var verifiedBy: String?
    public var verificationRelease: String?
    public var failedDevices: [String]?

    public init(_ fw: Firmware, _ v: FirmwareVerification) {
        (id, product, version, sequence, size) = (fw.id.rawValue, fw.product.rawValue, fw.version.rawValue, fw.sequence, fw.size)
        (sha256, md5, createdAt, verification) = (fw.sha256, fw.md5, fw.createdAt, v.status.rawValue)
        (verifiedBy, verificationRelease) = (v.verifiedBy?.rawValue, v.releaseID?.rawValue)
        failedDevices = v.failedDevices.map(\.rawValue)
    }

    public init(id: String, product: String, version: String, sequence: Int64, size: Int64, sha256: String, createdAt: Date, verification: String) {
        (self.id, self.product, self.version, self.sequence, self.size) = (id, product, version, sequence, size)
        (self.sha256, self.createdAt, self.verification) = (sha256, createdAt, verification)
    }

    enum CodingKeys: String, CodingKey {
        case id, product, version, sequence, size, sha256, md5, createdAt = "created_at", verification
        case verifiedBy = "verified_by", verificationRelease = "verification_release", failedDevices = "failed_devices"
    }
}

/// A release just made (`release create`, `firmware verify`).
public struct CreatedRelease: Sendable {
    public var release: String
    /// one-off, fleet or verification.
    public var kind: String
    /// One-off: the jobs created, the devices skipped (and why), the ids never seen.
    public var jobs: Int?
    public var skipped: [(device: String, reason: String)] = []
    public var unknownDevices: [String] = []
    /// A verification release's test devices.
    public var devices: [String]?
    /// The fleet release itself, when made here (the API answers with its id only).
    public var fleet: FleetRelease?

    public init(release: String, kind: String) { (self.release, self.kind) = (release, kind) }

    public init(_ outcome: ReleaseOrderOutcome) {
        switch outcome {
        case .oneOff(let plan):
            self.init(release: plan.release.id.rawValue, kind: "one-off")
            jobs = plan.jobs.count
            skipped = plan.skipped.map { ($0.0.rawValue, $0.1.text) }
            unknownDevices = plan.unknownDevices.map(\.rawValue)
        case .fleet(let release):
            self.init(release)
        }
    }

    public init(_ release: FleetRelease) {
        self.init(release: release.id.rawValue, kind: release.kind.rawValue)
        (devices, fleet) = (release.staticMembers?.map(\.rawValue), release)
    }
}

/// One row of `release list --json`.
public struct ReleaseRow: Codable, Sendable, Equatable {
    public var release, firmware, kind, target, phase: String
    public var createdAt: Date
    public init(release: String, firmware: String, kind: String, target: String, phase: String, createdAt: Date) {
        (self.release, self.firmware, self.kind, self.target, self.phase, self.createdAt) = (release, firmware, kind, target, phase, createdAt)
    }
    enum CodingKeys: String, CodingKey { case release, firmware, kind, target, phase, createdAt = "created_at" }
}

/// What pause, resume, advance or cancel did.
public struct RolloutResult: Sendable, Equatable {
    public var changed: Bool
    public var summary: String
    public var canceledJobs: [String]?

    public init(changed: Bool, summary: String, canceledJobs: [String]? = nil) {
        (self.changed, self.summary, self.canceledJobs) = (changed, summary, canceledJobs)
    }

    public init(_ outcome: RolloutOutcome, _ command: RolloutStateMachine.Command) {
        switch outcome {
        case .changed(let change): self.init(changed: true, summary: change.summary)
        case .canceledJobs(let jobs):
            self.init(
                changed: !jobs.isEmpty, summary: jobs.isEmpty ? "nothing to do (every job had ended)" : "canceled \(jobs.count) jobs",
                canceledJobs: jobs.map(\.rawValue))
        case .unchanged:
            self.init(changed: false, summary: "nothing to do (already \(command == .pause ? "paused" : command == .resume ? "running" : "canceled"))")
        }
    }
}

/// One row of `token list --json` (never a secret).
public struct TokenRow: Codable, Sendable, Equatable {
    public var name: String
    public var scope: String
    public var created_at: String
    public var revoked_at: String?

    public init(_ token: AccessToken) {
        (name, scope) = (token.name.rawValue, token.scope.rawValue)
        created_at = token.createdAt.formatted(.iso8601)
        revoked_at = token.revokedAt?.formatted(.iso8601)
    }

    public init(name: String, scope: String, createdAt: Date, revokedAt: Date?) {
        (self.name, self.scope, created_at, revoked_at) = (name, scope, createdAt.formatted(.iso8601), revokedAt?.formatted(.iso8601))
    }
}
