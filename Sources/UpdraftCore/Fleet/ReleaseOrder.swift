import Foundation

/// What an operator asks of `release create`, from the CLI's options or the API's JSON
/// body alike: one target, and the fleet options. Without any fleet option it makes a
/// one-off release (one job per target device now); with one, a fleet release. Both
/// front ends fill this and hand it to the same operation, which checks it here.
public struct ReleaseOrder: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        case devices([DeviceID])
        case product(ProductID)
        case groups([GroupID])
    }

    public var firmware: FirmwareID
    public var target: Target
    /// Make a fleet release even without another fleet option.
    public var fleet = false
    public var selectGroups: [GroupID]?
    public var selectDevices: [DeviceID]?
    public var percent: Double?
    public var sourceVersions: [FirmwareVersion]?
    public var membership: BatchPolicy.Membership?
    public var startAt: Date?
    public var retryInterval: TimeInterval?
    public var maxRetries: Int?
    public var deviceTimeout: TimeInterval?
    public var rate: Int?
    public var delivery: BatchPolicy.Delivery?
    public var stages: [Int]?
    public var successThreshold: Double?
    public var errorThreshold: Double?
    public var onError: RolloutPolicy.ErrorAction?
    public var minStageDuration: TimeInterval?
    public var force = false
    public var allowDowngrade = false
    public var allowUnknown = false

    public init(firmware: FirmwareID, target: Target) {
        (self.firmware, self.target) = (firmware, target)
    }

    /// How an option is named in messages: `--max-retries` on the command line,
    /// `max_retries` in the API's JSON body.
    public enum Naming: Sendable {
        case commandLine, json

        public func name(_ option: String) -> String {
            switch self {
            case .commandLine: "--" + option
            case .json: option.replacingOccurrences(of: "-", with: "_")
            }
        }

        /// A refusal's advice in this front end's words: for the API, the CLI's options and
        /// commands that a `release create` refusal names become the JSON fields and calls.
        public func reword(_ error: UpdraftError) -> UpdraftError {
            guard self == .json else { return error }
            var message = error.message
            for (cli, api) in Self.apiWording { message = message.replacingOccurrences(of: cli, with: api) }
            message = message.replacing(/`updraft firmware verify ([^ `]+) --devices [^`]*`/) { "POST /v1/firmware/\($0.1)/verify" }
            message = message.replacing(/`updraft firmware show ([^ `]+)`/) { "GET /v1/firmware/\($0.1)" }
            return UpdraftError(error.code, message)
        }

        static let apiWording = [
            ("pass --allow-unknown", #"set "allow_unknown": true"#), ("pass --allow-downgrade", #"set "allow_downgrade": true"#),
            ("pass --force", #"set "force": true"#), ("`updraft device list`", "GET /v1/devices"),
        ]
    }

    public var isFleet: Bool {
        if case .groups = target { return true }
        return fleet || force || selectGroups != nil || selectDevices != nil || percent != nil || sourceVersions != nil
            || membership != nil || startAt != nil || retryInterval != nil || maxRetries != nil || deviceTimeout != nil
            || rate != nil || delivery != nil || stages != nil || successThreshold != nil || errorThreshold != nil
            || onError != nil || minStageDuration != nil
    }

    /// Refuses options out of range or that exclude each other (`invalid_release_options`).
    public func validate(naming: Naming) throws(UpdraftError) {
        func refuse(_ message: String) -> UpdraftError { UpdraftError("invalid_release_options", message) }
        let n = naming.name
        if [selectGroups != nil, selectDevices != nil, percent != nil].filter({ $0 }).count > 1 {
            throw refuse("Give at most one of \(n("select-group")), \(n("select-devices")) and \(n("percent")).")
        }
        if let percent, !(percent > 0 && percent <= 100) {
            throw refuse("\(n("percent")) must be more than 0 and at most 100 (got \(percent.formatted())).")
        }
        if let maxRetries, !(0...10).contains(maxRetries) { throw refuse("\(n("max-retries")) must be 0...10 (got \(maxRetries)).") }
        if let rate, rate < 1 { throw refuse("\(n("rate")) must be at least 1 offer per minute (got \(rate)).") }
        for (option, value) in [("success-threshold", successThreshold), ("error-threshold", errorThreshold)] {
            if let value, !(0...1).contains(value) {
                throw refuse("\(n(option)) must be a fraction from 0 to 1 (got \(value.formatted())).")
            }
        }
        for (option, value) in [("retry-interval", retryInterval), ("device-timeout", deviceTimeout), ("min-stage-duration", minStageDuration)] {
            if let value, !(value >= 0 && value <= 366 * 86400) { throw refuse("\(n(option)) must be 0 to 366 days in seconds (got \(value)).") }
        }
        for (option, list) in [("devices", targetDevices), ("select-devices", selectDevices?.map(\.rawValue)), ("select-group", selectGroups?.map(\.rawValue))] {
            if let list, list.isEmpty { throw refuse("\(n(option)) is empty; give one or more.") }
        }
    }

    private var targetDevices: [String]? {
        switch target {
        case .devices(let ids): ids.map(\.rawValue)
        case .groups(let ids): ids.isEmpty ? [] : nil
        case .product: nil
        }
    }

    /// The devices named by id (target and selection): checked against the registry
    /// unless ``allowUnknown``.
    public var namedDevices: [DeviceID] {
        var named: [DeviceID] = []
        if case .devices(let ids) = target { named += ids }
        named += selectDevices ?? []
        return named
    }

    /// The one-off release's target; `nil` for groups (fleet only).
    public var oneOffTarget: ReleaseTarget? {
        switch target {
        case .devices(let ids): .devices(ids)
        case .product(let product): .product(product)
        case .groups: nil
        }
    }

    public var fleetTarget: FleetTarget {
        switch target {
        case .devices(let ids): .devices(ids)
        case .groups(let ids): .groups(ids)
        case .product(let product): .productDefault(product)
        }
    }

    /// Which devices, when, how fast and how often: from the batch options.
    public var batchPolicy: BatchPolicy {
        var policy = BatchPolicy(sourceVersions: sourceVersions ?? [])
        if let selectGroups { policy.selection = .groups(selectGroups) }
        if let selectDevices { policy.selection = .devices(selectDevices) }
        if let percent { policy.selection = .percentage(percent) }
        if let membership { policy.membership = membership }
        if let startAt { policy.start = .at(startAt) }
        if retryInterval != nil || maxRetries != nil {
            policy.retry = RetryPolicy(interval: retryInterval ?? 60, maxRetries: maxRetries ?? 3)
        }
        policy.deviceTimeout = deviceTimeout
        policy.notificationsPerMinute = rate
        if let delivery { policy.delivery = delivery }
        return policy
    }

    /// Stages and thresholds: from the rollout options.
    public var rolloutPolicy: RolloutPolicy {
        var rollout = RolloutPolicy()
        if let stages { rollout.stages = stages }
        rollout.successThreshold = successThreshold
        rollout.errorThreshold = errorThreshold
        if let onError { rollout.onError = onError }
        if let minStageDuration { rollout.minimumStageDuration = minStageDuration }
        return rollout
    }

    /// The fleet release request for `firmware` (the catalog entry of ``firmware``).
    public func fleetRequest(_ firmware: FirmwareRef) -> FleetReleaseRequest {
        FleetReleaseRequest(
            firmware: firmware, target: fleetTarget, policy: batchPolicy, rollout: rolloutPolicy, allowDowngrade: allowDowngrade, force: force)
    }
}

/// What `release create` made.
public enum ReleaseOrderOutcome: Sendable {
    case oneOff(ReleasePlan)
    case fleet(FleetRelease)

    public var releaseID: ReleaseID {
        switch self {
        case .oneOff(let plan): plan.release.id
        case .fleet(let release): release.id
        }
    }
}

/// What a rollout command (pause, resume, advance, cancel) did to a release.
public enum RolloutOutcome: Sendable, Equatable {
    /// A fleet release changed.
    case changed(RolloutStateMachine.Change)
    /// The fleet release already was where the command would put it.
    case unchanged
    /// A one-off release's active jobs were canceled (none: every job had ended).
    case canceledJobs([JobID])
}
