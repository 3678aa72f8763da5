import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

struct Events: FleetCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the event log as JSON lines.",
        discussion: "Fields: seq, time, kind, device, job, release, firmware, from, to, progress, reason, detail, actor (who asked: cli:<os user>, or an API token's name). Every accepted job transition, refusal, release and device change, with a gap-free sequence number. Backends can also subscribe to the <prefix>/events MQTT topic. With --server, --follow reads the API's event stream and reconnects after a gateway restart without missing or repeating an event.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Start after this sequence number.") var after: Int64 = 0
    @Flag(help: "Keep printing new events as they are committed.") var follow = false
    @Flag(help: "Accepted for symmetry with the other read commands: the output is always JSON lines.") var json = false

    func run(_ fleet: any FleetClient) async throws {
        guard !follow else {
            return try await fleet.followEvents(after: after) { event in
                print(event.json)
                fflush(nil)
            }
        }
        var cursor = after
        while true {
            let events = try await fleet.events(after: cursor, limit: 1000)
            for event in events { print(event.json) }
            guard events.count == 1000, let last = events.last else { return }
            cursor = last.sequence
        }
    }
}
