import Foundation
import OpenAPIRuntime
import UpdraftCore

/// Release changes and the release report: create (one-off and fleet), show, and the
/// rollout commands.
extension APIHandlers {
    func createRelease(_ input: Operations.CreateRelease.Input) async throws -> Operations.CreateRelease.Output {
        let (operations, actor) = try changes()
        let body = switch input.body { case .json(let body): body }
        let outcome = try await operations.createRelease(try ReleaseOrder(body), by: actor)
        let created: Components.Schemas.ReleaseCreated =
            switch outcome {
            case .oneOff(let plan):
                .init(
                    release: plan.release.id.rawValue, kind: "one-off", jobs: plan.jobs.count,
                    skipped: plan.skipped.map { .init(device: $0.0.rawValue, reason: $0.1.text) }, unknownDevices: plan.unknownDevices.map(\.rawValue))
            case .fleet(let release):
                .init(release: release.id.rawValue, kind: release.kind.rawValue, devices: release.staticMembers?.map(\.rawValue))
            }
        return .created(.init(body: .json(created)))
    }

    func getRelease(_ input: Operations.GetRelease.Input) async throws -> Operations.GetRelease.Output {
        let (operations, _) = try changes()
        let report = try await operations.releaseReport(try ReleaseID(validating: input.path.id))
        let after = try input.query.cursor.map { try DeviceID(validating: $0) }.map(\.rawValue)
        let limit = try Self.limit(input.query.limit)
        let rows = report.devices.sorted { $0.device < $1.device }.filter { after == nil || $0.device > after! }
        let page = Array(rows.prefix(limit))
        return .ok(.init(body: .json(.init(report, devices: page, next: rows.count > limit ? page.last?.device : nil))))
    }

    func pauseRelease(_ input: Operations.PauseRelease.Input) async throws -> Operations.PauseRelease.Output {
        .ok(.init(body: .json(try await rollout(.pause, input.path.id))))
    }

    func resumeRelease(_ input: Operations.ResumeRelease.Input) async throws -> Operations.ResumeRelease.Output {
        .ok(.init(body: .json(try await rollout(.resume, input.path.id))))
    }

    func advanceRelease(_ input: Operations.AdvanceRelease.Input) async throws -> Operations.AdvanceRelease.Output {
        .ok(.init(body: .json(try await rollout(.advance, input.path.id))))
    }

    func cancelRelease(_ input: Operations.CancelRelease.Input) async throws -> Operations.CancelRelease.Output {
        .ok(.init(body: .json(try await rollout(.cancel, input.path.id))))
    }

    private func rollout(_ command: RolloutStateMachine.Command, _ id: String) async throws -> Components.Schemas.ReleaseCommandResult {
        let (operations, actor) = try changes()
        let release = try ReleaseID(validating: id)
        switch try await operations.rollout(command, release: release, by: actor) {
        case .changed(let change):
            return .init(release: id, changed: true, summary: change.summary)
        case .unchanged:
            return .init(release: id, changed: false, summary: "nothing to do (already \(command == .resume ? "running" : command == .pause ? "paused" : "there"))")
        case .canceledJobs(let jobs):
            return .init(
                release: id, changed: !jobs.isEmpty, summary: jobs.isEmpty ? "nothing to do (every job had ended)" : "canceled \(jobs.count) jobs",
                canceledJobs: jobs.map(\.rawValue))
        }
    }
}

extension ReleaseOrder {
    /// The API's body as the order the CLI's options make (field names: the options' in snake case).
    init(_ body: Components.Schemas.ReleaseCreate) throws {
        let targets = [body.devices != nil, body.product != nil, body.groups != nil].filter { $0 }.count
        guard targets == 1 else {
            throw UpdraftError("invalid_release_options", "Give exactly one target: devices, groups or product.")
        }
        let target: Target
        if let devices = body.devices {
            target = .devices(try devices.map { try DeviceID(validating: $0) })
        } else if let groups = body.groups {
            target = .groups(try groups.map { try GroupID(validating: $0) })
        } else {
            target = .product(try ProductID(validating: body.product!))
        }
        self.init(firmware: try FirmwareID(validating: body.firmware), target: target)
        fleet = body.fleet ?? false
        (force, allowDowngrade, allowUnknown) = (body.force ?? false, body.allowDowngrade ?? false, body.allowUnknown ?? false)
        selectGroups = try body.selectGroup.map { try $0.map { try GroupID(validating: $0) } }
        selectDevices = try body.selectDevices.map { try $0.map { try DeviceID(validating: $0) } }
        sourceVersions = try body.sourceVersions.map { try $0.map { try FirmwareVersion(validating: $0) } }
        percent = body.percent
        membership = body.membership.flatMap { BatchPolicy.Membership(rawValue: $0.rawValue) }
        delivery = body.delivery.flatMap { BatchPolicy.Delivery(rawValue: $0.rawValue) }
        onError = body.onError.flatMap { RolloutPolicy.ErrorAction(rawValue: $0.rawValue) }
        (startAt, retryInterval, maxRetries, deviceTimeout) = (body.startAt, body.retryInterval, body.maxRetries, body.deviceTimeout)
        (rate, stages, minStageDuration) = (body.rate, body.stages, body.minStageDuration)
        (successThreshold, errorThreshold) = (body.successThreshold, body.errorThreshold)
    }
}

extension Components.Schemas.ReleaseDetail {
    init(_ report: ReleaseReport, devices: [ReleaseReport.DeviceRow], next: String?) {
        self.init(
            release: report.release, firmware: report.firmware, kind: report.kind, target: report.target, phase: report.phase,
            phaseDetail: report.phaseDetail, stagePercent: report.stagePercent, started: report.started, forced: report.forced,
            total: report.total, counts: .init(additionalProperties: report.counts),
            failedByReason: .init(additionalProperties: report.failedByReason), updatingPercent: report.updatingPercent,
            devices: devices.map {
                .init(
                    device: $0.device, state: $0.state, stateDetail: $0.stateDetail, job: $0.job, progress: $0.progress,
                    attempts: $0.attempts, failure: $0.failure, detail: $0.detail)
            }, nextCursor: next)
    }
}
