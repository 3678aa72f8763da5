import UpdraftWire

extension LayoutDialect {
    /// Another topic layout than today's: `fleet/<device>/ota/<kind>`, events outside the
    /// device tree. The gateway, the devices and the broker ACL all take it.
    static let fleetOTA = LayoutDialect(
        layout: DeviceTopicLayout(head: "fleet/", middle: "/ota/"), eventsTopic: "fleet-events/log",
        gatewayTopicFilters: ["fleet/#", "fleet-events/log"])
}
