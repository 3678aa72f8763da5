import Foundation
import UpdraftCore

// The API's JSON forms of the domain values (schemas in openapi.yaml).

extension Components.Schemas.Firmware {
    init(_ firmware: Firmware) {
        self.init(
            id: firmware.id.rawValue, product: firmware.product.rawValue, version: firmware.version.rawValue,
            sequence: firmware.sequence, size: firmware.size, sha256: firmware.sha256, createdAt: firmware.createdAt)
    }
}

extension Components.Schemas.Release {
    init(_ release: FleetRelease) {
        self.init(
            id: release.id.rawValue, firmware: release.firmware.id.rawValue, kind: release.kind.rawValue,
            target: release.target.summary, createdAt: release.createdAt)
    }

    init(_ release: Release) {
        self.init(
            id: release.id.rawValue, firmware: release.firmwareID.rawValue, kind: "one-off", target: release.target.summary,
            createdAt: release.createdAt)
    }
}

extension Components.Schemas.Event {
    init(_ event: UpdraftEvent) {
        self.init(
            seq: event.sequence, time: event.time, kind: event.kind.rawValue, device: event.deviceID?.rawValue,
            job: event.jobID?.rawValue, release: event.releaseID?.rawValue, firmware: event.firmwareID?.rawValue,
            from: event.from?.rawValue, to: event.to?.rawValue, progress: event.progress, reason: event.reason?.rawValue,
            detail: event.detail, actor: event.actor)
    }
}

extension Components.Schemas.Token {
    init(_ token: AccessToken) {
        let scope: ScopePayload =
            switch token.scope {
            case .read: .read
            case .operate: .operate
            case .admin: .admin
            }
        self.init(name: token.name.rawValue, scope: scope, createdAt: token.createdAt, revokedAt: token.revokedAt)
    }
}
