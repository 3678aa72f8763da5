import Foundation
import UpdraftCore
import UpdraftSettings

/// Settings of the update engine (UpdraftCore). Read here, in the composition root, so
/// that the domain does not depend on a configuration library.
public struct EngineSettings: Sendable {
    /// Announcements and refused reports one device may make the gateway record per minute.
    public var deviceEventsPerMinute: Int = 30
    /// Seconds a download may stay silent before it is nudged once, and again after the
    /// nudge before it fails (``FleetPlanner/stallAfter``).
    public var stallAfter: Int = Int(FleetPlanner().stallAfter)

    public init() {}

    /// Reads `devices.events_per_minute` and `fleet.stall_after` from the root scope.
    public init(reader: ConfigKeys) {
        let d = Self()
        deviceEventsPerMinute = reader.scoped(to: "devices").int(forKey: "events_per_minute", default: d.deviceEventsPerMinute)
        stallAfter = reader.scoped(to: "fleet").int(forKey: "stall_after", default: d.stallAfter, in: 1...604_800)
    }

    public func validate() throws(UpdraftError) {
        guard deviceEventsPerMinute >= 1 else {
            throw UpdraftError.configInvalid("devices.events_per_minute must be at least 1, not \(deviceEventsPerMinute).")
        }
        guard stallAfter >= 1 else {
            throw UpdraftError.configInvalid("fleet.stall_after must be a positive number of seconds (120 is the default), not \(stallAfter).")
        }
    }

    var eventBudget: DeviceEventBudget { DeviceEventBudget(perMinute: deviceEventsPerMinute) }
    var planner: FleetPlanner { FleetPlanner(stallAfter: TimeInterval(stallAfter)) }
}
