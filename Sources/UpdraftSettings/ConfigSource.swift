import Configuration
import Foundation
import SystemPackage
import UpdraftCore

/// The configuration as read at a start: `UPDRAFT_*` environment variables over a YAML
/// file over the defaults, ready for each module's settings type to read its keys from
/// ``keys``. `UpdraftConfiguration.load` puts the whole gateway's settings together from
/// it; the `config` fuzz harness drives it without the HTTP stack (README "Fuzzing").
public struct ConfigSource: Sendable {
    public let keys: ConfigKeys
    /// The file read, and its text (nil when no file was read).
    public let path: String
    public let yaml: String?

    /// - Parameter file: a YAML file; nil means `defaultPath` when it exists, else defaults only.
    public static func load(file: String?, defaultPath: String = "Config/updraft.yaml") async throws(UpdraftError) -> ConfigSource {
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider().prefixKeys(with: "updraft")
        ]
        let path = file ?? defaultPath
        var yaml: String?
        if file != nil || FileManager.default.fileExists(atPath: path) {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw UpdraftError("config_missing", "Configuration file '\(path)' does not exist. Pass an existing file to --config, or omit it to use the defaults.")
            }
            guard !isFolder.boolValue else {
                throw UpdraftError("config_invalid", "--config '\(path)' is a folder; pass the YAML file itself (for example \(path)/updraft.yaml).")
            }
            do {
                yaml = try String(contentsOfFile: path, encoding: .utf8)
                providers.append(try await FileProvider<YAMLSnapshot>(filePath: FilePath(path)))
            } catch {
                throw UpdraftError("config_invalid", "Configuration file '\(path)' could not be read: \(error). Compare it with Config/updraft.yaml.")
            }
        }
        return ConfigSource(keys: ConfigKeys(ConfigReader(providers: providers)), path: path, yaml: yaml)
    }

    /// After every settings type read its keys: the first wrong value throws `config_invalid`;
    /// keys of the file and `UPDRAFT_*` variables nobody read are returned as warnings (a
    /// scalar where a group of keys belongs throws).
    public func finish(environment: [String: String] = ProcessInfo.processInfo.environment) throws(UpdraftError) -> [String] {
        try keys.check()
        let fromFile = try yaml.map { text throws(UpdraftError) in try keys.unknownKeys(inYAML: text, file: path) } ?? []
        return fromFile + keys.unknownVariables(in: environment)
    }
}
