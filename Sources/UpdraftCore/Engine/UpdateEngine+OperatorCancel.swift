import Foundation

/// Jobs an operator canceled (`updraft job cancel`, `updraft device decommission`): the
/// store already holds them canceled, with their `job.transition` event.
extension UpdateEngine {
    /// Ends the job here too: the device gets its withdrawal, and nothing the engine still
    /// holds writes the job back as active. Returns the commands to deliver.
    @discardableResult
    public func jobCanceledByOperator(_ jobID: JobID) async throws -> [DeviceCommand] {
        guard let stored = try await store.job(jobID), stored.state == .canceled,
            let device = active.first(where: { $0.value.job.id == jobID })?.key
        else { return takeCommands() }
        active[device] = nil
        pendingJobs[jobID] = stored
        jobChanged(stored, at: now())
        emit(.withdraw(jobID), to: device)
        logger.info("job canceled by operator", metadata: ["job.id": "\(jobID)", "device.id": "\(device)"])
        return takeCommands()
    }
}
