import Configuration
import UpdraftCore
import UpdraftSettings

/// The status store. Keys under `store` in Config/updraft.yaml.
public struct StoreSettings: Sendable {
    /// SQLite file; empty means `<data_dir>/updraft.sqlite`.
    public var sqlitePath: String = ""

    public init() {}

    /// Reads the keys of the `store` scope.
    public init(reader: ConfigKeys) {
        sqlitePath = reader.scoped(to: "sqlite").string(forKey: "path", default: Self().sqlitePath)
    }
}

/// Firmware images: what `firmware add` accepts and what the gateway keeps in memory.
/// Keys under `firmware` in Config/updraft.yaml.
public struct FirmwareSettings: Sendable {
    /// Largest image `updraft firmware add` accepts, in bytes.
    public var maxImageBytes: Int64 = 64 << 20
    /// Image bytes the gateway's ``FirmwareImageCache`` holds in memory at most.
    public var cacheBytes: Int = FirmwareImageCache.defaultCapacityBytes

    public init() {}

    /// Reads the keys of the `firmware` scope.
    public init(reader: ConfigKeys) {
        let d = Self()
        maxImageBytes = Int64(reader.int(forKey: "max_image_bytes", default: Int(d.maxImageBytes), in: 1...(1 << 32)))
        cacheBytes = reader.int(forKey: "cache_bytes", default: d.cacheBytes, in: 0...(1 << 40))
    }

    public func validate() throws(UpdraftError) {
        guard maxImageBytes > 0 else { throw UpdraftError.configInvalid("firmware.max_image_bytes must be positive.") }
    }
}
