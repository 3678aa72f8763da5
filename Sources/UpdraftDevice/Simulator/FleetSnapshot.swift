import UpdraftCore

/// Counts over a simulated fleet at one moment.
public struct FleetSnapshot: Sendable, Equatable, CustomStringConvertible {
    public var devices = 0
    /// Connected and announced.
    public var online = 0
    public var phases: [DeviceStatus.Phase: Int] = [:]
    /// Devices whose last job failed here, by reason.
    public var failures: [FailureReason: Int] = [:]
    /// Devices by the version they run.
    public var versions: [FirmwareVersion: Int] = [:]
    public var bytesReceived = 0
    public var resumes = 0
    public var stalls = 0
    public var verifyRetries = 0
    /// Offers the devices could not trust and ignored (``DeviceState/ignoredOffers``).
    public var ignoredOffers = 0

    public init() {}

    init(_ states: some Sequence<DeviceState>) {
        for state in states {
            devices += 1
            if state.online { online += 1 }
            phases[state.status.phase, default: 0] += 1
            if case .failed(let reason) = state.status { failures[reason, default: 0] += 1 }
            versions[state.version, default: 0] += 1
            bytesReceived += state.bytesReceived
            resumes += state.resumes
            stalls += state.stalls
            verifyRetries += state.verifyRetries
            ignoredOffers += state.ignoredOffers
        }
    }

    public subscript(phase: DeviceStatus.Phase) -> Int { phases[phase] ?? 0 }

    public func count(running version: FirmwareVersion) -> Int { versions[version] ?? 0 }

    public var description: String {
        let phaseText = DeviceStatus.Phase.allCases.compactMap { phase in
            phases[phase].map { "\(phase.rawValue)=\($0)" }
        }.joined(separator: " ")
        let versionText = versions.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return "devices=\(devices) online=\(online) \(phaseText) versions[\(versionText)] bytes=\(bytesReceived) resumes=\(resumes) stalls=\(stalls) verify_retries=\(verifyRetries) ignored_offers=\(ignoredOffers)"
    }
}
