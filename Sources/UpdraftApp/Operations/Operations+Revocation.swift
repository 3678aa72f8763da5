import Foundation
import UpdraftCoAP
import UpdraftCore

/// `updraft device revoke` and re-admission by `updraft device provision`.
extension Operations {
    /// What revoking one device did: whether it had an MQTT password line (removed, the
    /// broker reloaded), a CoAP key (removed), a valid client certificate (now on the CRL;
    /// its MQTT session taken over, see Operations+SessionTakeover), and whether it was
    /// revoked already (then nothing is recorded again).
    public struct Revocation: Sendable, Codable, Equatable {
        public let device: String
        public let mqtt, coap, alreadyRevoked: Bool
        public var certificate = false
        enum CodingKeys: String, CodingKey { case device, mqtt, coap, certificate, alreadyRevoked = "already_revoked" }
    }

    /// Revokes devices: their MQTT password line and CoAP key are removed at once (a running
    /// managed broker reloads its password file and disconnects them; a running gateway
    /// re-reads the PSK file within a second), then each is marked revoked in the store with
    /// a `device.revoked` event naming `actor`. The gateway (running, or at its next start)
    /// cancels the device's active job with reason `revoked` and refuses what it still
    /// sends. Ids that are neither in the registry nor provisioned are refused before
    /// anything changes.
    public func revokeDevices(_ ids: [DeviceID], now: Date = Date()) async throws -> [Revocation] {
        let ids = ids.reduce(into: [DeviceID]()) { if !$0.contains($1) { $0.append($1) } }
        let credentials = brokerCredentials
        for id in ids where id.rawValue == credentials.gatewayUser || id.rawValue == credentials.eventsUser {
            throw UpdraftError("device_id_reserved", "'\(id)' is the broker account of the gateway or of the events consumer, not a device; nothing was revoked.")
        }
        let provisioned = credentials.provisionedUsers().union(PSKFile(path: configuration.resolvedPSKFile).identities)
        let profiles = try await store.fleetProfiles()
        var unknown: [DeviceID] = []
        for id in ids where !provisioned.contains(id.rawValue) && profiles[id] == nil {
            if try await store.device(id) == nil { unknown.append(id) }
        }
        guard unknown.isEmpty else {
            throw UpdraftError(
                "unknown_devices",
                "No device \(unknown.map(\.rawValue).joined(separator: ", ")) is provisioned or has ever connected; check the ids (`updraft device list`). Nothing was revoked.")
        }
        let mqtt = try credentials.remove(ids)
        let certificates = try fleetPKI.revokeCertificates(of: ids, now: now)
        // Every device with a revoked certificate, not only those revoked now: a revoke
        // killed before it took the session over is completed by the next one.
        let onCRL = try fleetPKI.devicesWithRevokedCertificates(ids)
        if !onCRL.isEmpty {
            _ = try await takeOverSessions(of: onCRL)
        } else if !mqtt.isEmpty {
            try reloadBroker()
        }
        let coap = try PSKFile.remove(ids.map(\.rawValue), path: configuration.resolvedPSKFile)
        var revocations: [Revocation] = []
        for id in ids {
            // Provisioned but never connected: it enters the registry, marked revoked.
            let registered = try await store.device(id) != nil
            let was = Box(false)
            try await store.updateFleetProfile(id) { profile in
                guard !profile.isRevoked else {
                    was.set(true)
                    return StoreBatch()
                }
                profile.revokedAt = now
                return StoreBatch(
                    devices: registered ? [] : [Device(id: id, firstSeen: now)],
                    events: [UpdraftEvent(kind: .deviceRevoked, time: now, deviceID: id, detail: "revoked by \(actor)", actor: actor.name)])
            }
            var revocation = Revocation(device: id.rawValue, mqtt: mqtt.contains(id.rawValue), coap: coap.contains(id.rawValue), alreadyRevoked: was.value)
            revocation.certificate = certificates.contains(id)
            revocations.append(revocation)
        }
        logger.notice("devices revoked", metadata: ["devices": "\(ids.map(\.rawValue))", "actor": "\(actor)"])
        return revocations
    }

    /// `updraft device provision`: new credentials (see ``provisionDeviceCredentials(_:)``),
    /// and a revoked device among `ids` is admitted again (a `fleet.command` "readmitted"
    /// event, which a running gateway follows). The store is changed first, so a device
    /// that connects with its new credentials is not refused as revoked.
    public func admitDevices(
        _ ids: [DeviceID], certificatesInto directory: String? = nil, now: Date = Date()
    ) async throws -> [DeviceCredentials] {
        let profiles = try await store.fleetProfiles()
        for id in Set(ids) where profiles[id]?.isRevoked == true {
            try await store.updateFleetProfile(id) { profile in
                guard profile.isRevoked else { return StoreBatch() }
                profile.revokedAt = nil
                return StoreBatch(events: [UpdraftEvent(kind: .fleetCommand, time: now, deviceID: id, detail: "readmitted (provisioned again by \(actor))", actor: actor.name)])
            }
        }
        return try provisionDeviceCredentials(ids, certificatesInto: directory)
    }

    /// A release naming revoked devices is refused (a product release still reaches the
    /// others: the gateway cancels a revoked device's job at once, reason `revoked`).
    func refuseRevoked(in target: ReleaseTarget) async throws {
        guard case .devices(let ids) = target else { return }
        let profiles = try await store.fleetProfiles()
        let revoked = ids.filter { profiles[$0]?.isRevoked == true }
        guard !revoked.isEmpty else { return }
        throw UpdraftError(
            "device_revoked",
            "Device \(revoked.map(\.rawValue).joined(separator: ", ")) is revoked; provision it again (`updraft device provision`) or leave it out. Nothing was created.")
    }
}
