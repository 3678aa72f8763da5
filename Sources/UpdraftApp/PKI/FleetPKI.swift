import Crypto
import Foundation
import PrivateFiles
import SwiftASN1
import UpdraftCore
import X509

#if canImport(Glibc)
import Glibc
#endif

/// The fleet's certificate authority and the managed broker's TLS certificate.
///
/// Generated (the default, `<data_dir>/pki`): `ca.crt` + `ca.key` (ECDSA P-256, made on
/// first use), `broker.crt` + `broker.key` signed by it for localhost, 127.0.0.1, ::1 and
/// `pki.broker_names` (made again when those names change or it nears its end). Your own
/// PKI (`pki.ca_file` and the broker's files): nothing is generated, and device
/// certificates need `pki.ca_key_file`. Keys are 0600 (``PrivateFile``); certificates 0644.
public struct FleetPKI: Sendable {
    public let settings: PKISettings
    /// Where the generated files live.
    public let directory: String

    public init(settings: PKISettings, directory: String) {
        (self.settings, self.directory) = (settings, directory)
    }

    /// The broker certificate also names `mqtt.broker.tls_host` when it is one address.
    public init(configuration: UpdraftConfiguration) {
        var settings = configuration.pki
        let host = configuration.mqtt.broker.tlsHost
        if !["0.0.0.0", "::", "", "127.0.0.1", "localhost", "::1"].contains(host) && !settings.brokerNames.contains(host) {
            settings.brokerNames.append(host)
        }
        self.init(settings: settings, directory: configuration.resolvedPKIDirectory)
    }

    /// false: the operator's own PKI (`pki.ca_file`).
    public var isGenerated: Bool { settings.caFile.isEmpty }
    /// The CA certificate every device and the gateway trust.
    public var caFile: String { isGenerated ? directory + "/ca.crt" : settings.caFile }
    public var brokerCertFile: String { isGenerated ? directory + "/broker.crt" : settings.brokerCertFile }
    public var brokerKeyFile: String { isGenerated ? directory + "/broker.key" : settings.brokerKeyFile }
    var caKeyFile: String? { isGenerated ? directory + "/ca.key" : (settings.caKeyFile.isEmpty ? nil : settings.caKeyFile) }

    /// A device's client certificate (CN = device id, clientAuth) and its private key, PEM.
    public struct DeviceCertificate: Sendable {
        public let certificate: String
        public let privateKey: String
    }

    /// Makes what is missing of a generated PKI (CA, broker certificate); checks that the
    /// files of your own PKI are readable.
    /// Then signs the CRL again (``refreshCRL(now:)``).
    public func prepareBroker(now: Date = Date()) throws {
        try prepareBrokerCertificate(now: now)
        try refreshCRL(now: now)
    }

    private func prepareBrokerCertificate(now: Date) throws {
        guard isGenerated else {
            for (key, path) in [("pki.ca_file", caFile), ("pki.broker_cert_file", brokerCertFile), ("pki.broker_key_file", brokerKeyFile)]
            where !FileManager.default.isReadableFile(atPath: path) {
                throw UpdraftError("pki_missing", "\(key) is '\(path)', which this user cannot read. Check the path and its permissions.")
            }
            return
        }
        try withLock {
            let ca = try loadOrMakeCA(now: now)
            if try brokerCertificateIsCurrent(ca: ca.certificate, now: now) { return }
            let key = P256.Signing.PrivateKey()
            let certificate = try Self.leaf(
                commonName: "Updraft broker", publicKey: .init(key.publicKey), names: brokerNames, usage: .serverAuth,
                days: settings.brokerDays, ca: ca, now: now)
            try writeKey(key.pemRepresentation, to: brokerKeyFile)
            try writeCertificate(certificate, to: brokerCertFile)
        }
    }

    /// A new key and certificate for `id`, signed by the fleet CA, recorded in
    /// `issued-certificates` (a new serial each time; earlier ones keep their state).
    public func issueDevice(_ id: DeviceID, now: Date = Date()) throws -> DeviceCertificate {
        try withLock {
            let ca = try signingCA(now: now)
            let key = P256.Signing.PrivateKey()
            let certificate = try Self.leaf(
                commonName: id.rawValue, publicKey: .init(key.publicKey), names: [], usage: .clientAuth,
                days: settings.deviceDays, ca: ca, now: now)
            try record(certificate, device: id)
            return DeviceCertificate(certificate: try certificate.serializeAsPEM().pemString + "\n", privateKey: key.pemRepresentation + "\n")
        }
    }

    /// The CA certificate and key that sign device certificates and the CRL (the caller
    /// holds the PKI lock).
    func signingCA(now: Date) throws -> (certificate: Certificate, key: Certificate.PrivateKey) {
        guard let caKeyFile else {
            throw UpdraftError("pki_no_ca_key", "Device certificates and the revocation list are signed with the CA's key, and pki.ca_key_file is empty: set it, or issue certificates (CN = device id, clientAuth) with your own PKI.")
        }
        if isGenerated { return try loadOrMakeCA(now: now) }
        return (try Self.readCertificate(caFile), try Self.readKey(caKeyFile))
    }

    /// The broker certificate's names: the loopback ones and `pki.broker_names`.
    var brokerNames: [GeneralName] {
        (["localhost", "127.0.0.1", "::1"] + settings.brokerNames).map(Self.generalName)
    }

    // MARK: Internals

    func loadOrMakeCA(now: Date) throws -> (certificate: Certificate, key: Certificate.PrivateKey) {
        let certExists = FileManager.default.fileExists(atPath: caFile)
        let keyExists = FileManager.default.fileExists(atPath: directory + "/ca.key")
        if certExists && keyExists { return (try Self.readCertificate(caFile), try Self.readKey(directory + "/ca.key")) }
        guard !certExists && !keyExists else {
            throw UpdraftError("pki_incomplete", "\(directory) holds only one of ca.crt and ca.key. Restore the other, or move both away to make a new fleet CA (every device certificate must then be issued again).")
        }
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let name = try DistinguishedName {
            OrganizationName("Updraft")
            CommonName("Updraft fleet CA")
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: publicKey, notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(20 * 365 * 86_400), issuer: name, subject: name,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: .init(key))
        try writeKey(key.pemRepresentation, to: directory + "/ca.key")
        try writeCertificate(certificate, to: caFile)
        return (certificate, .init(key))
    }

    private static func leaf(
        commonName: String, publicKey: Certificate.PublicKey, names: [GeneralName], usage: ExtendedKeyUsage.Usage, days: Int,
        ca: (certificate: Certificate, key: Certificate.PrivateKey), now: Date
    ) throws -> Certificate {
        let caKeyID = (try? ca.certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            ?? SubjectKeyIdentifier(hash: ca.certificate.publicKey).keyIdentifier
        return try Certificate(
            version: .v3, serialNumber: .init(), publicKey: publicKey, notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(Double(days) * 86_400), issuer: ca.certificate.subject,
            subject: try DistinguishedName { CommonName(commonName) },
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([usage])
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: caKeyID)
                if !names.isEmpty { SubjectAlternativeNames(names) }
            },
            issuerPrivateKey: ca.key)
    }

    /// The broker certificate exists, is signed by `ca`, names what is configured and has
    /// more than 30 days left.
    private func brokerCertificateIsCurrent(ca: Certificate, now: Date) throws -> Bool {
        guard FileManager.default.fileExists(atPath: brokerKeyFile),
            let certificate = try? Self.readCertificate(brokerCertFile),
            ca.publicKey.isValidSignature(certificate.signature, for: certificate),
            let names = try? certificate.extensions.subjectAlternativeNames
        else { return false }
        return Set(names) == Set(brokerNames) && certificate.notValidAfter > now.addingTimeInterval(30 * 86_400)
    }

    static func generalName(_ name: String) -> GeneralName {
        var v4 = in_addr()
        if inet_pton(AF_INET, name, &v4) == 1 { return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v4) { Array($0)[...] })) }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, name, &v6) == 1 { return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v6) { Array($0)[...] })) }
        return .dnsName(name)
    }

    static func readCertificate(_ path: String) throws -> Certificate {
        do {
            return try Certificate(pemEncoded: try String(contentsOfFile: path, encoding: .utf8))
        } catch {
            throw UpdraftError("pki_unreadable", "\(path) is not a readable PEM certificate (\(error)). Check the file, or point pki.ca_file at the right one.")
        }
    }

    static func readKey(_ path: String) throws -> Certificate.PrivateKey {
        do {
            return try Certificate.PrivateKey(pemEncoded: try String(contentsOfFile: path, encoding: .utf8))
        } catch {
            throw UpdraftError("pki_unreadable", "\(path) is not a readable PEM private key (\(error)). Check the file and that this user may read it.")
        }
    }

    private func writeKey(_ pem: String, to path: String) throws {
        try PrivateFile.replace(path, with: pem + "\n", failure: writeFailure(path))
    }

    private func writeCertificate(_ certificate: Certificate, to path: String) throws {
        let pem = try certificate.serializeAsPEM().pemString + "\n"
        guard FileManager.default.createFile(atPath: path + ".tmp", contents: Data(pem.utf8), attributes: [.posixPermissions: 0o644]),
            rename(path + ".tmp", path) == 0
        else { throw writeFailure(path) }
    }

    func writeFailure(_ path: String) -> UpdraftError {
        UpdraftError("pki_write_failed", "Cannot write \(path); check that \(directory) is writable by this user.")
    }

    /// `serve` and `device provision --cert` may make the CA at once: one at a time.
    func withLock<T>(_ body: () throws -> T) throws -> T {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw writeFailure(directory)
        }
        return try PrivateFile.withLock(directory + "/.lock", failure: writeFailure(directory + "/.lock"), body)
    }
}
