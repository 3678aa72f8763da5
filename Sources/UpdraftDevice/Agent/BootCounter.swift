import Foundation

/// The `boot` number of a device's announcements: greater at every boot, the same for
/// every announcement of one boot, so the gateway can tell an announcement made after a
/// reboot from a broker's replay of an older one (see the MQTT device protocol article).
enum BootCounter {
    /// The number for a new boot.
    ///
    /// With storage, a counter kept in `boot.json`, written before it is used. Without,
    /// the wall clock in milliseconds at boot: what a device with a clock but no flash to
    /// spare would send. Either way greater than `previous`.
    static func next(after previous: UInt64?, storage: DeviceStorage?) -> UInt64 {
        let floor = previous.map { $0 &+ 1 } ?? 0
        guard let storage else {
            return max(floor, UInt64(Date().timeIntervalSince1970 * 1000))
        }
        let boot = max(floor, (storage.boot() ?? 0) &+ 1)
        storage.saveBoot(boot)
        return boot
    }
}
