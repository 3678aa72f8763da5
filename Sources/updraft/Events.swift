import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

struct Events: OperationsCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the event log as JSON lines.",
        discussion: "Fields: seq, time, kind, device, job, release, firmware, from, to, progress, reason, detail, actor (who asked: cli:<os user>, or an API token's name). Every accepted job transition, refusal, release and device change, with a gap-free sequence number. Backends can also subscribe to the <prefix>/events MQTT topic.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Start after this sequence number.") var after: Int64 = 0
    @Flag(help: "Keep printing new events as they are committed.") var follow = false
    @Flag(help: "Accepted for symmetry with the other read commands: the output is always JSON lines.") var json = false

    func run(_ ops: Operations) async throws {
        var cursor = after
        while true {
            let events = try await ops.store.events(after: cursor, limit: 1000)
            for event in events {
                print(event.jsonLine())
                cursor = event.sequence
            }
            if events.count == 1000 { continue }
            guard follow else { return }
            fflush(nil)
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
