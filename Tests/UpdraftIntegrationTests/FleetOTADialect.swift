import UpdraftCore
import UpdraftWire

/// A dialect with another topic layout than today's: `fleet/<device>/ota/<kind>`, events
/// outside the device tree. The gateway, the devices and the broker ACL all take it.
struct FleetOTADialect: WireDialect {
    let layout = DeviceTopicLayout(head: "fleet/", middle: "/ota/")
    let maxControlBytes = 4096

    func topic(_ kind: WireTopicKind, device: String) -> String { layout.topic(kind, device: device) }
    func parse(_ topic: String) -> WireTopic? { layout.parse(topic) }
    var eventsTopic: String { "fleet-events/log" }
    var gatewayTopicFilters: [String] { ["fleet/#", eventsTopic] }
}
