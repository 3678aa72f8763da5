import Foundation
import Testing
import UpdraftSettings
import Yams

/// Docker/Dockerfile and Docker/compose.yaml, checked by reading (no Docker engine runs on
/// the build machines; `make test` also runs hadolint on the Dockerfile): compose parses
/// and builds that Dockerfile from this repository, publishes exactly the ports the image
/// exposes, each the default of the configuration key that serves it; every `UPDRAFT_*`
/// variable names a key updraft reads; what the image copies exists; no anonymous broker
/// is opened to the network; the health check is a command updraft has.
@Suite struct DockerFilesTests {
    static let docker = Peers.packageRoot.appendingPathComponent("Docker")

    /// Each published port and the key whose default it is.
    static let portKeys: [String: String] = [
        "8883/tcp": "mqtt.broker.tls_port", "8884/tcp": "mqtt.broker.mtls_port",
        "5683/udp": "coap.port", "5684/udp": "coap.secure_port",
    ]

    /// The Dockerfile's instructions, continuation lines joined, comments dropped.
    static func instructions() throws -> [(keyword: String, arguments: String)] {
        let text = try String(contentsOf: docker.appendingPathComponent("Dockerfile"), encoding: .utf8)
        var result: [(String, String)] = []
        var current = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("#") { continue }
            current += line.hasSuffix("\\") ? String(line.dropLast()) + " " : line
            guard !line.hasSuffix("\\") else { continue }
            let parts = current.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1).map(String.init)
            if parts.count == 2 { result.append((parts[0].uppercased(), parts[1])) }
            current = ""
        }
        return result
    }

    static func compose() throws -> [String: Any] {
        let text = try String(contentsOf: docker.appendingPathComponent("compose.yaml"), encoding: .utf8)
        let root = try #require(try Yams.load(yaml: text) as? [String: Any], "compose.yaml is not a YAML mapping")
        let services = try #require(root["services"] as? [String: Any])
        return try #require(services["updraft"] as? [String: Any], "compose.yaml has no service updraft")
    }

    /// `UPDRAFT_X=value` pairs of the Dockerfile's ENV lines.
    static func environment(_ instructions: [(keyword: String, arguments: String)]) -> [String: String] {
        var env: [String: String] = [:]
        for (keyword, arguments) in instructions where keyword == "ENV" {
            for pair in arguments.split(separator: " ", omittingEmptySubsequences: true) {
                let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                if kv.count == 2 { env[kv[0]] = kv[1] }
            }
        }
        return env
    }

    @Test func composeBuildsThisDockerfileAndPublishesWhatItExposes() throws {
        let service = try Self.compose()
        let build = try #require(service["build"] as? [String: Any])
        let context = Self.docker.appendingPathComponent(try #require(build["context"] as? String)).standardized
        #expect(context.path == Peers.packageRoot.standardized.path)
        #expect(FileManager.default.fileExists(atPath: context.appendingPathComponent(try #require(build["dockerfile"] as? String)).path))

        let instructions = try Self.instructions()
        let exposed = Set(instructions.filter { $0.keyword == "EXPOSE" }.flatMap { $0.arguments.split(separator: " ").map(String.init) })
        let published = try #require(service["ports"] as? [String]).map { entry -> String in
            let container = String(entry.split(separator: ":").last ?? "")
            return container.contains("/") ? container : container + "/tcp"
        }
        #expect(Set(published) == exposed && published.count == exposed.count, "compose publishes \(published), the image exposes \(exposed)")
        #expect(!exposed.contains("1883/tcp"), "the plain MQTT listener must not be published")
        let defaults = try ConfigurationFileTests.keysInCode()
        for port in exposed {
            let key = try #require(Self.portKeys[port], "\(port) is served by no known key")
            let value = try #require(defaults[key], "\(key) is not a key updraft reads")
            #expect(value == String(port.prefix { $0 != "/" }), "\(port) is published but \(key) defaults to \(value)")
        }

        let volumes = try #require(service["volumes"] as? [String])
        let dataDir = try #require(Self.environment(instructions)["UPDRAFT_DATA_DIR"])
        #expect(volumes.contains { $0.hasSuffix(":" + dataDir) }, "the data directory \(dataDir) is not on a volume: \(volumes)")
    }

    @Test func everyVariableNamesAKeyAndTheBrokerIsNeverAnonymous() throws {
        let instructions = try Self.instructions()
        var variables = Self.environment(instructions)
        for (name, value) in try Self.compose()["environment"] as? [String: Any] ?? [:] { variables[name] = "\(value)" }
        let known = Dictionary(uniqueKeysWithValues: try ConfigurationFileTests.keysInCode().keys.map { (ConfigKeys.variable($0), $0) })
        for name in variables.keys.sorted() where name.hasPrefix("UPDRAFT_") {
            #expect(known[name] != nil, "\(name) names no configuration key")
        }
        #expect(variables["UPDRAFT_MQTT_BROKER_AUTHENTICATION"] == "password_file")
        #expect(variables["UPDRAFT_COAP_HOST"] == "0.0.0.0")
        #expect(variables["UPDRAFT_MQTT_BROKER_EXTERNAL"] == nil && variables["UPDRAFT_MQTT_BROKER_PLAIN_PORT"] == nil)
        // Nothing rewrites the broker's template (the old image opened the plain listener on 0.0.0.0).
        #expect(!instructions.contains { $0.keyword == "RUN" && ($0.arguments.contains("sed ") || $0.arguments.contains("mosquitto.conf")) })

        let users = instructions.filter { $0.keyword == "USER" }.map(\.arguments)
        #expect(users.last.map { $0 != "root" && $0 != "0" } == true, "the image must not run as root: \(users)")
        let health = try #require(instructions.first { $0.keyword == "HEALTHCHECK" }?.arguments)
        #expect(health.contains(#"CMD ["updraft", "health""#), "\(health)")
        #expect(instructions.contains { $0.keyword == "CMD" && $0.arguments.contains(#""serve""#) })
    }

    @Test func whatTheImageCopiesExists() throws {
        for (keyword, arguments) in try Self.instructions() where keyword == "COPY" && !arguments.hasPrefix("--from") {
            let sources = arguments.split(separator: " ").dropLast().map(String.init)
            for source in sources where !source.contains("[") {
                #expect(FileManager.default.fileExists(atPath: Peers.packageRoot.appendingPathComponent(source).path), "COPY \(source): no such path")
            }
        }
        // The reproducible build: the lock file is copied, and the build uses only its versions.
        let copies = try Self.instructions().filter { $0.keyword == "COPY" }.map(\.arguments)
        #expect(copies.contains { $0.contains("Package.resolve[d]") })
        #expect(try Self.instructions().contains { $0.keyword == "RUN" && $0.arguments.contains("--force-resolved-versions") })
        let ignored = try String(contentsOf: Self.docker.appendingPathComponent("Dockerfile.dockerignore"), encoding: .utf8)
        #expect(ignored.contains(".build") && !ignored.contains("Package.resolved"))
    }
}
