import Foundation
import Synchronization
import UpdraftCore
import X509

/// The revoked device certificates of the fleet CA, for the CoAP server's DTLS handshakes
/// (libcoap 4.3.1 takes no CRL file): a client certificate whose serial the record
/// (`<pki>/issued-certificates`) marks revoked is refused. Asked on the CoAP loop thread,
/// so it answers from memory and re-reads the record only when its modification time
/// changed (one stat per handshake): `device revoke` holds at the next handshake.
public final class RevokedCertificates: Sendable {
    private let pki: FleetPKI
    private struct State {
        var serials: Set<[UInt8]> = []
        var modified: Date?
    }
    private let state = Mutex(State())

    public init(pki: FleetPKI) {
        self.pki = pki
    }

    /// Whether a client certificate (DER) may complete the handshake: not on the record
    /// as revoked. A certificate that does not parse here is refused.
    public func accepts(der: [UInt8]) -> Bool {
        guard let certificate = try? Certificate(derEncoded: der) else { return false }
        return !revokedSerials().contains(Array(certificate.serialNumber.bytes))
    }

    private func revokedSerials() -> Set<[UInt8]> {
        let modified = (try? FileManager.default.attributesOfItem(atPath: pki.issuedFile))?[.modificationDate] as? Date
        if let known = state.withLock({ $0.modified == modified && modified != nil ? $0.serials : nil }) { return known }
        // Unreadable now (mid-restore): keep the last list rather than admit everyone.
        guard let entries = try? pki.issuedCertificates() else { return state.withLock { $0.serials } }
        let serials = Set(entries.filter { $0.revokedAt != nil }.map(\.serial))
        state.withLock { ($0.serials, $0.modified) = (serials, modified) }
        return serials
    }
}
