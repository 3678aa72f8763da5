import UpdraftCore
import UpdraftSettings

/// The fleet's certificates: the CA that signs the managed broker's TLS certificate and
/// the devices' client certificates (`updraft device provision --cert`). Keys under `pki`
/// in Config/updraft.yaml. By default Updraft makes and keeps them in `<data_dir>/pki`;
/// with `ca_file` set it uses a PKI of your own and generates nothing.
public struct PKISettings: Sendable {
    /// Folder of the generated PKI; empty: `<data_dir>/pki`.
    public var directory: String = ""
    /// Names the generated broker certificate holds besides localhost, 127.0.0.1 and ::1
    /// (the host's DNS names or addresses devices connect to).
    public var brokerNames: [String] = []
    /// Your own PKI (PEM files): the CA devices and the broker trust, the broker's
    /// certificate and key, and (only for `--cert`) the CA's key.
    public var caFile = "", caKeyFile = "", brokerCertFile = "", brokerKeyFile = ""
    /// Days a device certificate and a generated broker certificate are valid.
    public var deviceDays = 825, brokerDays = 825

    public init() {}

    /// Reads the keys of the `pki` scope.
    public init(reader: ConfigKeys) {
        let d = Self()
        directory = reader.string(forKey: "directory", default: d.directory)
        brokerNames = reader.strings(forKey: "broker_names", default: d.brokerNames)
        // Your own PKI: four paths, empty by default.
        let own = ["ca_file", "ca_key_file", "broker_cert_file", "broker_key_file"].map { reader.string(forKey: $0, default: "") }
        (caFile, caKeyFile, brokerCertFile, brokerKeyFile) = (own[0], own[1], own[2], own[3])
        deviceDays = reader.int(forKey: "device_days", default: d.deviceDays, in: 1...36_500)
        brokerDays = reader.int(forKey: "broker_days", default: d.brokerDays, in: 1...36_500)
    }

    /// Your own PKI is all three of ca_file, broker_cert_file and broker_key_file, or none.
    public func validate() throws(UpdraftError) {
        let own = [caFile, brokerCertFile, brokerKeyFile].filter { !$0.isEmpty }.count
        guard own == 0 || own == 3 else {
            throw UpdraftError.configInvalid("pki.ca_file, pki.broker_cert_file and pki.broker_key_file are your own PKI: set all three (PEM files) or none (Updraft then makes its own in <data_dir>/pki).")
        }
        guard own == 3 || caKeyFile.isEmpty else {
            throw UpdraftError.configInvalid("pki.ca_key_file is set without pki.ca_file: set pki.ca_file, pki.broker_cert_file and pki.broker_key_file too, or leave pki.ca_key_file empty.")
        }
    }
}
