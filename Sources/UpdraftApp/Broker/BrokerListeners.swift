import UpdraftMQTT

/// The managed broker's listeners, as mosquitto.conf lines (`{{listeners}}` in the
/// template). mosquitto 2.0 without `per_listener_settings`: the password file and the
/// ACL hold for every listener; `use_identity_as_username` makes the mutual-TLS listener
/// take the username from the client certificate's CN (a username or password the
/// client sends there is ignored, so a certificate cannot claim another name), and the
/// ACL's %u patterns then confine it to its own topics.
struct BrokerListeners: Sendable {
    var host: String
    var tlsPort: Int
    var mtlsPort: Int
    var plainPort: Int
    var caFile: String
    var certFile: String
    var keyFile: String
    /// The fleet CA's revocation list (``FleetPKI/crlFile``), checked on the mutual-TLS
    /// listener; nil when this PKI cannot sign one (your own CA without its key).
    var crlFile: String? = nil
    /// Whether clients prove who they are (then each username is its client id).
    var authenticates: Bool

    /// The ports mosquitto listens on, with the address to probe each at.
    var ports: [(host: String, port: Int)] {
        [(probeHost, tlsPort), (probeHost, mtlsPort), ("127.0.0.1", plainPort)].filter { $0.port != 0 }
    }

    /// Where this machine reaches the TLS listeners.
    var probeHost: String { Self.reachable(host) }

    /// The address this machine reaches a listener on `host` at (a wildcard: loopback).
    static func reachable(_ host: String) -> String { ["0.0.0.0", "::", ""].contains(host) ? "127.0.0.1" : host }

    var lines: String {
        var blocks: [String] = []
        if tlsPort != 0 {
            blocks.append(block("TLS, username and password", port: tlsPort, host: host, tls + ["require_certificate false"]))
        }
        if mtlsPort != 0 {
            blocks.append(block(
                "Mutual TLS: a certificate of the fleet CA, its CN is the username", port: mtlsPort, host: host,
                tls + ["require_certificate true", "use_identity_as_username true"] + (crlFile.map { ["crlfile \($0)"] } ?? [])))
        }
        if plainPort != 0 {
            blocks.append(block("Plain MQTT, this machine only", port: plainPort, host: "127.0.0.1", []))
        }
        return blocks.joined(separator: "\n\n")
    }

    private var tls: [String] { ["cafile \(caFile)", "certfile \(certFile)", "keyfile \(keyFile)"] }

    private func block(_ title: String, port: Int, host: String, _ options: [String]) -> String {
        (["# \(title)", "listener \(port) \(host)"] + options + (authenticates ? ["use_username_as_clientid true"] : []))
            .joined(separator: "\n")
    }
}
