import Crypto
import Foundation
import PrivateFiles
import SwiftASN1
import UpdraftCore
import X509

/// The record of issued device certificates and the fleet CA's certificate revocation list.
///
/// `issued-certificates` (0600, beside the CA): one line per certificate `device provision
/// --cert` issued, `serial-hex device not-after revoked-at` (Unix seconds, `-` while valid).
/// It lives with the CA rather than in the store because it belongs to the CA: it is
/// written where the certificate is signed, backed up and restored with the CA key, and
/// the CRL is derived from it alone. `crl.pem` (0644): an X.509 v2 CRL signed by the fleet
/// CA listing every revoked serial that has not expired, written atomically; the managed
/// broker's mutual-TLS listener reads it (`crlfile`).
extension FleetPKI {
    /// One issued device certificate.
    struct IssuedCertificate: Equatable {
        var serial: [UInt8]
        var device: String
        var notAfter: Date
        var revokedAt: Date?

        var line: String {
            let revoked = revokedAt.map { String(Int($0.timeIntervalSince1970)) } ?? "-"
            return "\(serial.map { String(format: "%02x", $0) }.joined()) \(device) \(Int(notAfter.timeIntervalSince1970)) \(revoked)"
        }

        init(serial: [UInt8], device: String, notAfter: Date, revokedAt: Date? = nil) {
            (self.serial, self.device, self.notAfter, self.revokedAt) = (serial, device, notAfter, revokedAt)
        }

        init?(line: Substring) {
            let parts = line.split(separator: " ")
            guard parts.count == 4, parts[0].count % 2 == 0, let notAfter = Int(parts[2]) else { return nil }
            var serial: [UInt8] = []
            var index = parts[0].startIndex
            while index < parts[0].endIndex {
                let next = parts[0].index(index, offsetBy: 2)
                guard let byte = UInt8(parts[0][index..<next], radix: 16) else { return nil }
                serial.append(byte)
                index = next
            }
            self.init(serial: serial, device: String(parts[1]), notAfter: Date(timeIntervalSince1970: Double(notAfter)))
            if parts[3] != "-" {
                guard let revoked = Int(parts[3]) else { return nil }
                revokedAt = Date(timeIntervalSince1970: Double(revoked))
            }
        }
    }

    var issuedFile: String { directory + "/issued-certificates" }
    /// The CRL the mutual-TLS listener checks client certificates against.
    public var crlFile: String { directory + "/crl.pem" }
    /// Whether this PKI can sign a CRL (a generated PKI, or your own with `pki.ca_key_file`).
    public var keepsCRL: Bool { caKeyFile != nil }

    func issuedCertificates() throws -> [IssuedCertificate] {
        guard let text = try? String(contentsOfFile: issuedFile, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map { line in
            guard let entry = IssuedCertificate(line: line) else {
                throw UpdraftError("pki_record_unreadable", "\(issuedFile) has a line that is not `serial device not-after revoked-at`: '\(line)'. Restore it from a backup of \(directory).")
            }
            return entry
        }
    }

    /// Records a certificate just issued (the caller holds the PKI lock).
    func record(_ certificate: Certificate, device: DeviceID) throws {
        var entries = try issuedCertificates()
        entries.append(IssuedCertificate(serial: Array(certificate.serialNumber.bytes), device: device.rawValue, notAfter: certificate.notValidAfter))
        try PrivateFile.replace(issuedFile, with: entries.map(\.line).joined(separator: "\n") + "\n", failure: writeFailure(issuedFile))
    }

    /// Revokes every valid certificate issued to `ids` and writes the CRL again (whenever
    /// one of them has a revoked certificate).
    /// - Returns: the devices that had a certificate revoked now.
    public func revokeCertificates(of ids: [DeviceID], now: Date = Date()) throws -> Set<DeviceID> {
        guard keepsCRL else { return [] }
        return try withLock {
            var entries = try issuedCertificates()
            var revoked: Set<DeviceID> = []
            let names = Set(ids.map(\.rawValue))
            for index in entries.indices where entries[index].revokedAt == nil && names.contains(entries[index].device) {
                entries[index].revokedAt = now
                revoked.insert(DeviceID(unchecked: entries[index].device))
            }
            if !revoked.isEmpty {
                try PrivateFile.replace(issuedFile, with: entries.map(\.line).joined(separator: "\n") + "\n", failure: writeFailure(issuedFile))
            }
            // Also when they were revoked before: a revoke killed between the record and
            // the CRL left a list without them.
            if entries.contains(where: { $0.revokedAt != nil && names.contains($0.device) }) { try writeCRL(entries, now: now) }
            return revoked
        }
    }

    /// The devices among `ids` with a revoked certificate in the record.
    public func devicesWithRevokedCertificates(_ ids: [DeviceID]) throws -> Set<DeviceID> {
        let names = Set(ids.map(\.rawValue))
        return Set(try issuedCertificates().filter { $0.revokedAt != nil && names.contains($0.device) }.map { DeviceID(unchecked: $0.device) })
    }

    /// Signs the CRL again from the record (at broker start: a fresh nextUpdate), after
    /// checking that the CRL in place, if any, is the CA's: a CRL that does not verify is
    /// refused rather than replaced, since it means someone else wrote into the PKI.
    public func refreshCRL(now: Date = Date()) throws {
        guard keepsCRL else { return }
        try withLock {
            if FileManager.default.fileExists(atPath: crlFile) { try verifyCRL() }
            try writeCRL(try issuedCertificates(), now: now)
        }
    }

    /// Throws `pki_crl_invalid` unless `crl.pem` is a CRL signed by the fleet CA.
    public func verifyCRL() throws {
        let invalid = UpdraftError("pki_crl_invalid", "\(crlFile) is not a revocation list signed by the fleet CA (\(caFile)); someone changed it. Restore \(directory) from a backup, or delete crl.pem to have it signed again from issued-certificates.")
        guard let text = try? String(contentsOfFile: crlFile, encoding: .utf8), let pem = try? PEMDocument(pemString: text),
            pem.discriminator == "X509 CRL", let ca = try? Self.readCertificate(caFile),
            let publicKey = P256.Signing.PublicKey(ca.publicKey)
        else { throw invalid }
        let parts: (tbs: ArraySlice<UInt8>, signature: ASN1BitString)? = try? DER.sequence(DER.parse(pem.derBytes), identifier: .sequence) { nodes in
            guard let tbs = nodes.next() else { throw invalid }
            _ = nodes.next()
            return (tbs.encodedBytes, try ASN1BitString(derEncoded: &nodes))
        }
        guard let parts, let signature = try? P256.Signing.ECDSASignature(derRepresentation: parts.signature.bytes),
            publicKey.isValidSignature(signature, for: Data(parts.tbs))
        else { throw invalid }
    }

    private func writeCRL(_ entries: [IssuedCertificate], now: Date) throws {
        let certificate = try signingCA(now: now).certificate
        guard let signer = try? P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: caKeyFile ?? "", encoding: .utf8)) else {
            throw UpdraftError("pki_crl_unsigned", "The revocation list is signed with the CA key, and \(caKeyFile ?? "pki.ca_key_file") is not an ECDSA P-256 key; use a P-256 CA, or keep your CRL yourself.")
        }
        // An expired certificate is refused anyway: it leaves the list.
        let revoked = entries.filter { $0.notAfter > now }.compactMap { entry in entry.revokedAt.map { (entry.serial, $0) } }
        let tbs = try Self.tbsCertList(issuer: certificate.subject, revoked: revoked, now: now)
        let signature = try signer.signature(for: Data(tbs)).derRepresentation
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { list in
            list.serializeRawBytes(tbs[...])
            try list.appendConstructedNode(identifier: .sequence) { try $0.serialize(Self.ecdsaWithSHA256) }
            try list.serialize(ASN1BitString(bytes: Array(signature)[...]))
        }
        let pem = PEMDocument(type: "X509 CRL", derBytes: serializer.serializedBytes).pemString + "\n"
        guard FileManager.default.createFile(atPath: crlFile + ".tmp", contents: Data(pem.utf8), attributes: [.posixPermissions: 0o644]),
            rename(crlFile + ".tmp", crlFile) == 0
        else { throw writeFailure(crlFile) }
    }

    static let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]

    /// TBSCertList (RFC 5280 5.1): v2, ecdsa-with-SHA256, the CA's name, valid five years
    /// (the gateway signs it again at each start), the revoked serials.
    static func tbsCertList(issuer: DistinguishedName, revoked: [([UInt8], Date)], now: Date) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.appendConstructedNode(identifier: .sequence) { tbs in
            try tbs.serialize(1)
            try tbs.appendConstructedNode(identifier: .sequence) { try $0.serialize(ecdsaWithSHA256) }
            try tbs.serialize(issuer)
            try tbs.serialize(utcTime(now.addingTimeInterval(-300)))
            try tbs.serialize(utcTime(now.addingTimeInterval(5 * 365 * 86_400)))
            guard !revoked.isEmpty else { return }
            try tbs.appendConstructedNode(identifier: .sequence) { list in
                for (serial, date) in revoked {
                    try list.appendConstructedNode(identifier: .sequence) { entry in
                        try entry.serialize(serial[...])
                        try entry.serialize(utcTime(date))
                    }
                }
            }
        }
        return serializer.serializedBytes
    }

    static func utcTime(_ date: Date) throws -> UTCTime {
        let c = Calendar(identifier: .gregorian)
        let parts = c.dateComponents(in: TimeZone(identifier: "UTC")!, from: date)
        return try UTCTime(
            year: parts.year!, month: parts.month!, day: parts.day!, hours: parts.hour!, minutes: parts.minute!, seconds: parts.second!)
    }
}
