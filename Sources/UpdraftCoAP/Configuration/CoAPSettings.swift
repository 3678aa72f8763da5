import Configuration
import UpdraftCore
import UpdraftSettings

/// The CoAP device API. Keys under `coap` in Config/updraft.yaml.
public struct CoAPSettings: Sendable {
    public var enabled: Bool = true
    /// Listen address; 127.0.0.1 keeps it on this machine, 0.0.0.0 serves the network.
    public var host: String = "127.0.0.1"
    /// `coap://` port; 0 disables plain CoAP.
    public var port: Int = 5683
    /// `coaps://` (DTLS-PSK) port; 0 disables DTLS.
    public var securePort: Int = 5684
    /// `<device id> <key>` per line; empty means `<data_dir>/coap-psk.txt`.
    public var pskFile: String = ""
    /// DTLS with certificates on `securePort` (all three set, or none): the CA that signs
    /// device certificates (a device's id is its certificate's CN), and the gateway's
    /// own certificate and key, PEM.
    public var caFile: String = ""
    public var certificateFile: String = ""
    public var privateKeyFile: String = ""
    /// Let plain-CoAP peers name their device with `?d=<id>`. For development only.
    public var allowUnauthenticated: Bool = false
    /// Seconds a CoAP device that announced no lifetime may stay silent before it is
    /// taken for offline.
    public var defaultLifetime: Int = 86_400
    /// DTLS peers past the cookie exchange that may be mid-handshake at once.
    public var maxHandshakes: Int = 100
    /// Seconds a DTLS handshake past the cookie exchange may take before it is dropped.
    public var handshakeTimeout: Int = 10

    public init() {}

    /// Reads the keys of the `coap` scope; absent keys keep the defaults above.
    public init(reader: ConfigKeys) {
        let d = CoAPSettings()
        enabled = reader.bool(forKey: "enabled", default: d.enabled)
        host = reader.string(forKey: "host", default: d.host)
        port = reader.int(forKey: "port", default: d.port, in: 0...65535)
        securePort = reader.int(forKey: "secure_port", default: d.securePort, in: 0...65535)
        pskFile = reader.string(forKey: "psk_file", default: d.pskFile)
        caFile = reader.string(forKey: "ca_file", default: d.caFile)
        certificateFile = reader.string(forKey: "certificate_file", default: d.certificateFile)
        privateKeyFile = reader.string(forKey: "private_key_file", default: d.privateKeyFile)
        allowUnauthenticated = reader.bool(forKey: "allow_unauthenticated", default: d.allowUnauthenticated)
        defaultLifetime = reader.int(forKey: "default_lifetime", default: d.defaultLifetime, in: 1...315_360_000)
        maxHandshakes = reader.int(forKey: "max_handshakes", default: d.maxHandshakes, in: 1...100_000)
        handshakeTimeout = reader.int(forKey: "handshake_timeout", default: d.handshakeTimeout, in: 1...3_600)
    }

    /// What a key's type and range alone cannot say, and the ranges again for values set
    /// in code.
    public func validate() throws(UpdraftError) {
        for (key, port) in [("coap.port", port), ("coap.secure_port", securePort)] where !(0...65535).contains(port) {
            throw UpdraftError.configInvalid("\(key) must be 0 (off) or 1...65535, not \(port).")
        }
        let pkiFiles = [caFile, certificateFile, privateKeyFile]
        guard pkiFiles.allSatisfy(\.isEmpty) || pkiFiles.allSatisfy({ !$0.isEmpty }) else {
            throw UpdraftError.configInvalid("coap.ca_file, coap.certificate_file and coap.private_key_file go together: set all three for DTLS with certificates, or none.")
        }
        guard defaultLifetime > 0 else {
            throw UpdraftError.configInvalid("coap.default_lifetime must be a positive number of seconds (86400 is a day).")
        }
        guard maxHandshakes > 0 else {
            throw UpdraftError.configInvalid("coap.max_handshakes must be positive (100 is the default), not \(maxHandshakes).")
        }
        guard handshakeTimeout > 0 else {
            throw UpdraftError.configInvalid("coap.handshake_timeout must be a positive number of seconds (10 is the default), not \(handshakeTimeout).")
        }
    }
}
