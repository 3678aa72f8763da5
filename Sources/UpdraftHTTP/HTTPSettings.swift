public import UpdraftCore
public import UpdraftSettings

/// The HTTP API of `updraft serve`. Keys under `http` in Config/updraft.yaml.
public struct HTTPSettings: Sendable {
    /// Listen address: 127.0.0.1 keeps the API on this machine.
    public var host: String = "127.0.0.1"
    /// TCP port; 0 turns the HTTP API off.
    public var port: Int = 8080
    /// PEM certificate chain and private key: both set serves HTTPS, neither plain HTTP.
    public var certificateFile: String = ""
    public var keyFile: String = ""
    /// How long a graceful shutdown waits for requests in flight before closing them.
    public var shutdownTimeout: Duration = .seconds(10)
    /// An event stream (`/v1/events/stream`) silent this long gets a `: keep-alive` comment,
    /// so proxies and clients see the connection alive.
    public var sseKeepAlive: Duration = .seconds(15)
    /// Devices may download firmware over HTTP by the signed URL their offer carries.
    public var downloads = true
    /// Where devices reach this server (scheme, host, port, optional path prefix); empty:
    /// `http(s)://host:port`, which only works when `host` is an address devices can reach.
    public var publicURL = ""
    /// How long a download URL stays valid after the offer or answer that carried it.
    public var downloadURLLifetime: Duration = .seconds(3600)
    /// Over plain HTTP, image bodies go from the file to the socket in the kernel
    /// (`sendfile`); off, or over HTTPS, they are read into buffers.
    public var sendfile = true
    /// A connection that sends no complete request part (headers, a body piece) for this
    /// long is closed: a client that stalls mid-request or trickles its headers, and an
    /// idle keep-alive connection. A response being sent (an event stream, a download) is
    /// not cut by it.
    public var idleTimeout: Duration = .seconds(30)
    /// Connections served at once; past it the server stops accepting (further clients
    /// wait in the kernel's backlog until one closes).
    public var maxConnections = 512

    public init() {}

    public var enabled: Bool { port != 0 }
    public var usesTLS: Bool { !certificateFile.isEmpty }

    /// Reads the keys of the `http` scope.
    public init(reader: ConfigKeys) {
        let d = Self()
        host = reader.string(forKey: "host", default: d.host)
        port = reader.int(forKey: "port", default: d.port, in: 0...65535)
        let tls = reader.scoped(to: "tls")
        certificateFile = tls.string(forKey: "certificate_file", default: d.certificateFile)
        keyFile = tls.string(forKey: "key_file", default: d.keyFile)
        shutdownTimeout = reader.duration(forKey: "shutdown_timeout", default: d.shutdownTimeout, unit: .seconds(1), in: 1...300)
        sseKeepAlive = reader.duration(forKey: "sse_keepalive", default: d.sseKeepAlive, unit: .seconds(1), in: 1...3600)
        downloads = reader.bool(forKey: "downloads", default: d.downloads)
        publicURL = reader.string(forKey: "public_url", default: d.publicURL)
        downloadURLLifetime = reader.duration(
            forKey: "download_url_lifetime", default: d.downloadURLLifetime, unit: .seconds(1), in: 10...(7 * 86_400))
        sendfile = reader.bool(forKey: "sendfile", default: d.sendfile)
        idleTimeout = reader.duration(forKey: "idle_timeout", default: d.idleTimeout, unit: .seconds(1), in: 1...3600)
        maxConnections = reader.int(forKey: "max_connections", default: d.maxConnections, in: 1...100_000)
    }

    /// The base of download URLs: ``publicURL``, else this server's own address; `nil` when
    /// HTTP downloads are off or no address devices could use is known (a wildcard host).
    public var downloadBaseURL: String? {
        guard enabled, downloads else { return nil }
        if !publicURL.isEmpty { return publicURL }
        guard !["0.0.0.0", "::", "[::]", ""].contains(host) else { return nil }
        let name = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return "\(usesTLS ? "https" : "http")://\(name):\(port)"
    }

    public func validate() throws(UpdraftError) {
        guard certificateFile.isEmpty == keyFile.isEmpty else {
            throw UpdraftError.configInvalid("Set both http.tls.certificate_file and http.tls.key_file for HTTPS, or neither for plain HTTP.")
        }
        guard publicURL.isEmpty || publicURL.hasPrefix("http://") || publicURL.hasPrefix("https://") else {
            throw UpdraftError.configInvalid("http.public_url must start with http:// or https:// (it is '\(publicURL)'), or be empty.")
        }
    }
}
