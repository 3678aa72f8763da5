import Foundation
import PrivateFiles
import UpdraftCore

extension Operations {
    /// The fleet PKI of this configuration.
    public var fleetPKI: FleetPKI { FleetPKI(configuration: configuration) }

    /// What `device provision --cert` wrote for one device.
    public struct CertificateFiles: Sendable, Codable, Equatable {
        /// `<dir>/<id>.crt`: CN = device id, clientAuth, signed by the fleet CA.
        public let certificate: String
        /// `<dir>/<id>.key` (0600).
        public let key: String
        /// `<dir>/ca.crt`: the fleet CA, to verify the broker.
        public let ca: String
    }

    /// Writes a client certificate and key for each device into `directory`, and the CA
    /// certificate beside them. The CA is made first if this data directory has none yet.
    public func issueDeviceCertificates(_ ids: [DeviceID], into directory: String) throws -> [DeviceID: CertificateFiles] {
        try brokerCredentials.checkNotReserved(ids)
        let pki = fleetPKI
        let issued = try ids.map { ($0, try pki.issueDevice($0)) }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let ca = directory + "/ca.crt"
            try? FileManager.default.removeItem(atPath: ca)
            try FileManager.default.copyItem(atPath: pki.caFile, toPath: ca)
            var files: [DeviceID: CertificateFiles] = [:]
            for (id, certificate) in issued {
                let base = directory + "/" + id.rawValue
                try Data(certificate.certificate.utf8).write(to: URL(fileURLWithPath: base + ".crt"))
                try PrivateFile.replace(base + ".key", with: certificate.privateKey, failure: UpdraftError("pki_write_failed", "Cannot write \(base).key."))
                files[id] = CertificateFiles(certificate: base + ".crt", key: base + ".key", ca: ca)
            }
            return files
        } catch let error as UpdraftError {
            throw error
        } catch {
            throw UpdraftError("pki_write_failed", "Cannot write the certificates into \(directory) (\(error)); check that it is a folder this user may write, or pass another with --out.")
        }
    }

    /// MQTT password, CoAP pre-shared key and (`certificatesInto`) a client certificate per device.
    public func provisionDeviceCredentials(_ ids: [DeviceID], certificatesInto directory: String?) throws -> [DeviceCredentials] {
        let files = try directory.map { try issueDeviceCertificates(ids, into: $0) } ?? [:]
        return try provisionDeviceCredentials(ids).map { credentials in
            var credentials = credentials
            credentials.certificate = files[DeviceID(unchecked: credentials.username)]
            return credentials
        }
    }
}
