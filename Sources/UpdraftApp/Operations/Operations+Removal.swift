import Foundation
import UpdraftCore
import UpdraftStore

/// Taking back what an operator started or added: `updraft job cancel`, `updraft firmware
/// delete`, `updraft device decommission`. Each records events naming ``actor``.
extension Operations {
    /// Cancels one job (a release to a mistyped device id no longer waits forever). The
    /// store gets the job canceled with its `job.transition` event and a `fleet.command`
    /// naming the job; a running gateway withdraws the offer from the device. A job of a
    /// fleet release may be planned again by its rules (pause or cancel the release, or
    /// lock or mark the device, to stop that).
    @discardableResult
    public func cancelJob(_ id: JobID, now: Date = Date()) async throws -> Job {
        let actor = actor
        // One transaction: the job is canceled only if it is still active when written (a
        // device finishing it meanwhile wins, and two cancels record one transition).
        let canceled = try await store.updateJob(id) { job in
            var machine = JobStateMachine(job)
            guard case .transitioned(let from, _) = machine.cancel(at: now) else {
                throw UpdraftError(
                    "job_finished",
                    "Job \(id) already ended (\(job.state.rawValue)); there is nothing to cancel. See `updraft device show \(job.deviceID)` for its history.")
            }
            job = machine.job
            job.detail = "canceled by \(actor)"
            return StoreBatch(events: [
                UpdraftEvent.job(.jobTransition, job, from: from, detail: job.detail, time: now).by(actor.name),
                UpdraftEvent(
                    kind: .fleetCommand, time: now, deviceID: job.deviceID, jobID: id, releaseID: job.releaseID,
                    firmwareID: job.firmwareID, detail: "cancel job", actor: actor.name),
            ])
        }
        logger.notice("job canceled", metadata: ["job.id": "\(id)", "actor": "\(actor)"])
        return canceled
    }

    /// `updraft release cancel` of a one-off release: cancels each of its jobs that has not
    /// ended (see ``cancelJob(_:now:)``). Returns the canceled jobs.
    public func cancelOneOffRelease(_ id: ReleaseID, now: Date = Date()) async throws -> [Job] {
        var canceled: [Job] = []
        for job in try await store.jobs(release: id) where job.state.isActive {
            do {
                canceled.append(try await cancelJob(job.id, now: now))
            } catch let error as UpdraftError where error.code == "job_finished" {
                // It ended meanwhile: nothing to cancel.
            }
        }
        return canceled
    }

    /// Removes a firmware no release refers to, and its image file unless another
    /// firmware has the same content. A firmware any release used stays: see
    /// ``StatusStore/deleteFirmware(_:actor:)``.
    @discardableResult
    public func deleteFirmware(_ id: FirmwareID) async throws -> Firmware {
        let firmware = try await store.deleteFirmware(id, actor: actor.name)
        if try await !store.firmwareList(product: nil).contains(where: { $0.sha256 == firmware.sha256 }) {
            let images = try FileImageStore(directory: configuration.imagesDirectory)
            try? FileManager.default.removeItem(atPath: try images.path(sha256: firmware.sha256))
        }
        logger.notice("firmware deleted", metadata: ["firmware.id": "\(id)", "actor": "\(actor)"])
        return firmware
    }

    /// What decommissioning a device did.
    public struct Decommission: Sendable, Codable, Equatable {
        public let device: String
        /// The job that was canceled, if it had an active one.
        public let canceledJob: String?
        public let revocation: Revocation
        enum CodingKeys: String, CodingKey { case device, canceledJob = "canceled_job", revocation }
    }

    /// Retires a device for good (scrapped, returned, stolen): its active job is canceled
    /// now (releases stop waiting for it), its credentials are revoked (it cannot connect
    /// again; see ``revokeDevices(_:now:)``), and its groups, lock and development flag are
    /// cleared (it no longer counts in any rule). Its registry entry and job history stay:
    /// they are the record of what it ran. `updraft device provision` re-admits it.
    public func decommissionDevice(_ id: DeviceID, now: Date = Date()) async throws -> Decommission {
        let known = try await store.device(id) != nil
        let profiled = try await store.fleetProfiles()[id] != nil
        guard known || profiled else {
            throw UpdraftError.notFound("device", id.rawValue, hint: "List devices with `updraft device list`.")
        }
        var canceled: Job?
        if let job = try await store.activeJobs().first(where: { $0.deviceID == id }) {
            canceled = try await cancelJob(job.id, now: now)
        }
        let revocation = try await revokeDevices([id], now: now)[0]
        try await store.updateFleetProfile(id) { profile in
            profile = DeviceFleetProfile(revokedAt: profile.revokedAt ?? now)
            return StoreBatch(events: [
                UpdraftEvent(
                    kind: .fleetCommand, time: now, deviceID: id,
                    detail: "decommissioned: credentials revoked, groups, lock and development flag cleared", actor: actor.name)
            ])
        }
        return Decommission(device: id.rawValue, canceledJob: canceled?.id.rawValue, revocation: revocation)
    }
}
