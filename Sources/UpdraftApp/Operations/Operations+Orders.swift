import Foundation
import UpdraftCore

/// The operator's commands as the CLI and the HTTP API both give them: each front end
/// parses its own input into these and prints or encodes the outcome; what is checked
/// and stored is here once.
extension Operations {
    /// `release create` / `POST /v1/releases`: a one-off release, or a fleet release when
    /// the order has a fleet option (see ``ReleaseOrder``).
    public func createRelease(_ order: ReleaseOrder, naming: ReleaseOrder.Naming) async throws -> ReleaseOrderOutcome {
        do {
            return try await create(order, naming: naming)
        } catch let error as UpdraftError {
            throw naming.reword(error)
        }
    }

    private func create(_ order: ReleaseOrder, naming: ReleaseOrder.Naming) async throws -> ReleaseOrderOutcome {
        try order.validate(naming: naming)
        if !order.isFleet, let target = order.oneOffTarget {
            return .oneOff(
                try await createRelease(
                    firmwareID: order.firmware, target: target, allowDowngrade: order.allowDowngrade, allowUnknown: order.allowUnknown))
        }
        let firmware = try await firmware(order.firmware)
        if !order.allowUnknown, let unknown = UpdraftError.unknownDevices(try await unknownDevices(order.namedDevices)) { throw unknown }
        return .fleet(try await createFleetRelease(order.fleetRequest(FirmwareRef(firmware))))
    }

    /// `release show` / `GET /v1/releases/{id}`: where a release, fleet or one-off, stands.
    public func releaseReport(_ id: ReleaseID) async throws -> ReleaseReport {
        if let fleet = try await store.fleetRelease(id) {
            return ReleaseReport.fleetView(try await fleetReleaseStatus(id), fleet)
        }
        guard let release = try await store.releases().first(where: { $0.id == id }) else {
            throw UpdraftError.notFound("release", id.rawValue, hint: "List releases with `updraft release list`.")
        }
        return ReleaseReport.oneOffView(release, try await releaseStatus(id))
    }

    /// `release pause|resume|advance|cancel` of any release: a fleet release takes the
    /// command; a one-off release can only be canceled (its active jobs are).
    public func rollout(_ command: RolloutStateMachine.Command, release id: ReleaseID) async throws -> RolloutOutcome {
        guard try await store.fleetRelease(id) != nil else {
            guard try await store.releases().contains(where: { $0.id == id }) else {
                throw UpdraftError.notFound("release", id.rawValue, hint: "List releases with `updraft release list`.")
            }
            guard command == .cancel else {
                throw UpdraftError(
                    "not_a_fleet_release",
                    "Release \(id) is a one-off release: its jobs were all created at once, so there is nothing to pause, resume or advance. Cancel it with `updraft release cancel \(id)`, or one job with `updraft job cancel JOB`.")
            }
            return .canceledJobs(try await cancelOneOffRelease(id).map(\.id))
        }
        return try await self.command(command, release: id).map(RolloutOutcome.changed) ?? .unchanged
    }
}
