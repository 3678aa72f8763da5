import Testing
import UpdraftCore
import UpdraftWire

/// A layout with the kind two levels after the device and events in their own tree.
struct SiteDialect: WireDialect {
    let layout = DeviceTopicLayout(head: "site/a/", middle: "/fw/v2/")
    let maxControlBytes = 256
    func topic(_ kind: WireTopicKind, device: String) -> String { layout.topic(kind, device: device) }
    func parse(_ topic: String) -> WireTopic? { layout.parse(topic) }
    var eventsTopic: String { "ops/updraft-events" }
    var gatewayTopicFilters: [String] { ["site/a/#", "ops/updraft-events"] }
}

@Suite struct WireDialectTests {
    let v1 = UpdraftDialectV1(prefix: "updraft")
    let site = SiteDialect()

    @Test(arguments: WireTopicKind.allCases)
    func everyTopicABuiltParsesBack(kind: WireTopicKind) {
        for dialect in [v1, site] as [any WireDialect] {
            #expect(dialect.parse(dialect.topic(kind, of: "dev-1")) == WireTopic(device: "dev-1", kind: kind))
        }
        #expect(site.topic(kind, of: "dev-1") == "site/a/dev-1/fw/v2/\(kind.rawValue)")
    }

    @Test func chunkTopicsCarryJobAndOffset() {
        let topic = site.chunkTopic(of: "d1", job: "j1", offset: 4096)
        #expect(topic == "site/a/d1/fw/v2/chunk/j1/4096")
        #expect(site.parse(topic) == WireTopic(device: "d1", kind: .chunk, rest: ["j1", "4096"]))
    }

    @Test(arguments: ["site/a/d1/fw/job", "site/a/d1/fw/v3/job", "site/b/d1/fw/v2/job", "site/a/d1", "site/a//fw/v2/job", "updraft/d/d1/job"])
    func topicsOutsideTheLayoutAreNotParsed(topic: String) {
        #expect(site.parse(topic) == nil)
    }

    @Test func decodingUsesTheDialectsLayoutAndLimit() throws {
        let (id, message) = try site.decode(topic: "site/a/d1/fw/v2/presence", payload: Array("online".utf8)).get()
        #expect(id == "d1" && message == .presence(online: true))
        #expect(site.decode(topic: "updraft/d/d1/presence", payload: Array("online".utf8)).failureCode == "unknown_topic")
        let big = site.decode(topic: "site/a/d1/fw/v2/announce", payload: Array(repeating: 32, count: 300))
        #expect(big.failureCode == "payload_too_large")
    }

    @Test func subscriptionsFollowTheLayout() {
        #expect(v1.gatewaySubscriptions == ["updraft/d/+/announce", "updraft/d/+/presence", "updraft/d/+/download", "updraft/d/+/progress", "updraft/d/+/query"])
        #expect(v1.deviceSubscriptions(of: "d1") == ["updraft/d/d1/job", "updraft/d/d1/error", "updraft/d/d1/pending", "updraft/d/d1/chunk/#"])
        #expect(site.deviceSubscriptions(of: "d1").last == "site/a/d1/fw/v2/chunk/#")
    }

    /// Today's ACL, line for line as the template had it before it was generated.
    @Test func v1RulesAreTheACLTheTemplateHad() {
        #expect(v1.gatewayRules.map(\.mosquittoLine) == ["topic readwrite updraft/#"])
        #expect(v1.eventsRules.map(\.mosquittoLine) == ["topic read updraft/events"])
        #expect(v1.deviceRules.map(\.mosquittoLine) == [
            "pattern read updraft/d/%u/chunk/#",
            "pattern write updraft/d/%u/download",
            "pattern write updraft/d/%u/progress",
            "pattern read updraft/d/%u/job",
            "pattern read updraft/d/%u/error",
            "pattern read updraft/d/%u/pending",
            "pattern write updraft/d/%u/announce",
            "pattern write updraft/d/%u/presence",
            "pattern write updraft/d/%u/query",
        ])
    }

    /// Today's protocol is also just a layout: as a value it gives the same topics and rules.
    @Test func v1AsALayoutValueIsV1() {
        let value = LayoutDialect(
            layout: DeviceTopicLayout(head: "updraft/d/", middle: "/"), eventsTopic: "updraft/events", gatewayTopicFilters: ["updraft/#"])
        #expect(value.gatewayRules == v1.gatewayRules && value.eventsRules == v1.eventsRules && value.deviceRules == v1.deviceRules)
        #expect(value.gatewaySubscriptions == v1.gatewaySubscriptions)
        #expect(value.parse("updraft/d/d1/chunk/j1/0") == v1.parse("updraft/d/d1/chunk/j1/0"))
    }

    @Test func rulesFollowAnotherLayout() {
        #expect(site.gatewayRules.map(\.mosquittoLine) == ["topic readwrite site/a/#", "topic readwrite ops/updraft-events"])
        #expect(site.eventsRules.map(\.mosquittoLine) == ["topic read ops/updraft-events"])
        #expect(site.deviceRules.first?.mosquittoLine == "pattern read site/a/%u/fw/v2/chunk/#")
        // Every topic a device uses is covered, in its direction.
        let rules = Set(site.deviceRules.map(\.mosquittoLine))
        for kind in WireTopicKind.allCases where kind != .chunk {
            #expect(rules.contains("pattern \(kind.fromDevice ? "write" : "read") \(site.topic(kind, device: "%u"))"))
        }
    }
}

extension Result where Failure == WireDecodeError {
    var failureCode: String? {
        if case .failure(let failure) = self { return failure.error.code }
        return nil
    }
}
