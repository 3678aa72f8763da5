import Foundation

/// Revoked devices (`updraft device revoke`): the broker and the PSK file already refuse
/// their credentials; the engine ends their active job (reason `revoked`) and refuses what
/// they still send over a connection made before (a DTLS session outlives its key).
extension UpdateEngine {
    public func isRevoked(_ id: DeviceID) -> Bool { fleet.profiles[id]?.isRevoked ?? false }

    /// The answer to anything a revoked device sends, nil for the others.
    func refusalIfRevoked(_ id: DeviceID) -> UpdraftError? {
        guard isRevoked(id) else { return nil }
        return UpdraftError(
            "device_revoked",
            "Device \(id) was revoked by the operator; nothing it sends is taken. Ask the operator to provision it again (`updraft device provision \(id)`).")
    }

    /// Cancels the active job of a revoked device (the device gets its withdrawal if it is
    /// still reachable) and takes it offline.
    func enforceRevocation(_ id: DeviceID) {
        guard isRevoked(id) else { return }
        if var machine = active[id] {
            apply(machine.cancel(at: now()), &machine, device: id, detail: CancelReason.revoked.detail)
        }
        if var device = devices[id], device.online {
            device.online = false
            save(device)
            record(UpdraftEvent(kind: .deviceOffline, time: now(), deviceID: id, detail: "revoked"))
        }
    }

    /// After loading: revocations made while no gateway ran take effect now. The
    /// withdrawals go out with the next commands delivered.
    func enforceRevocations() {
        for (id, profile) in fleet.profiles where profile.isRevoked { enforceRevocation(id) }
    }
}
