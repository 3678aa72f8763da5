import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// Jobs (show, cancel), decommission and version statistics over HTTP, each with its
/// hostile twins: wrong scope, unknown and malformed ids, a second cancel, a race of cancels.
@Suite(.timeLimit(.minutes(3))) struct JobAPITests {
    @Test func aJobIsShownAndCanceledOnceEvenByRacingCalls() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["d1", "d2"], version: "2.0", seed: 50)
            #expect(try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","devices":["d1","d2"]}"#).status == 201)
            let jobs = try await api.ops.store.activeJobs().sorted { $0.deviceID < $1.deviceID }
            let (first, second) = (jobs[0].id.rawValue, jobs[1].id.rawValue)

            let shown = try await api.send("GET", "/v1/jobs/\(first)", .read)
            #expect(shown.status == 200, "\(shown.text)")
            #expect(shown.json["job"] as? String == first)
            #expect(shown.json["device"] as? String == "d1")
            #expect(shown.json["firmware"] as? String == "thermo@2.0")
            #expect(shown.json["target_version"] as? String == "2.0")
            #expect(shown.json["state"] as? String == "queued")

            let before = try await api.ops.store.lastEventSequence()
            let refusals: [(String, String, TokenScope, Int, String)] = [
                ("POST", "/v1/jobs/\(first)/cancel", .read, 403, "insufficient_scope"),
                ("GET", "/v1/jobs/jnothing", .read, 404, "job_not_found"),
                ("POST", "/v1/jobs/jnothing/cancel", .operate, 404, "job_not_found"),
                ("GET", "/v1/jobs/..", .read, 400, "invalid_job_id"),
                ("POST", "/v1/jobs/\(String(repeating: "j", count: 33))/cancel", .operate, 400, "invalid_job_id"),
            ]
            for (method, path, scope, status, code) in refusals {
                let response = try await api.send(method, path, scope)
                #expect(response.status == status, "\(method) \(path): \(response.status) \(response.text)")
                #expect(response.json["code"] as? String == code, "\(method) \(path): \(response.text)")
            }
            #expect(try await api.ops.store.lastEventSequence() == before)

            let canceled = try await api.send("POST", "/v1/jobs/\(first)/cancel", .operate)
            #expect(canceled.status == 200, "\(canceled.text)")
            #expect(canceled.json["state"] as? String == "canceled")
            #expect(canceled.json["detail"] as? String == "canceled by token:t-operate")
            let twice = try await api.send("POST", "/v1/jobs/\(first)/cancel", .operate)
            #expect(twice.status == 409, "\(twice.text)")
            #expect(twice.json["code"] as? String == "job_finished")

            // Eight cancels of one job at once: one wins, the others find it ended.
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 { group.addTask { try await api.send("POST", "/v1/jobs/\(second)/cancel", .admin).status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.sorted() == [200] + Array(repeating: 409, count: 7), "\(statuses)")
            let transitions = try await api.ops.store.events(after: before, limit: 100).filter { $0.kind == .jobTransition && $0.to == .canceled }
            #expect(transitions.map { $0.jobID?.rawValue } == [first, second])
            #expect(transitions.map(\.actor) == ["token:t-operate", "token:t-admin"])
            #expect(try await api.send("GET", "/v1/jobs/\(second)", .read).json["state"] as? String == "canceled")
        }
    }

    @Test func decommissionNeedsAdminCancelsTheJobAndRevokes() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["d1", "d2"], version: "2.0", seed: 51)
            #expect(try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","devices":["d1"]}"#).status == 201)
            #expect(try await api.send("POST", "/v1/groups/east/devices", .operate, json: #"{"devices":["d1"]}"#).status == 200)
            let job = try #require(try await api.ops.store.activeJobs().first)
            let before = try await api.ops.store.lastEventSequence()
            for scope in [TokenScope.read, .operate] {
                let refused = try await api.send("POST", "/v1/devices/d1/decommission", scope)
                #expect(refused.status == 403, "\(scope): \(refused.text)")
                #expect(refused.json["code"] as? String == "insufficient_scope")
            }
            let unknown = try await api.send("POST", "/v1/devices/ghost/decommission", .admin)
            #expect(unknown.status == 404, "\(unknown.text)")
            #expect(unknown.json["code"] as? String == "device_not_found")
            #expect(try await api.send("POST", "/v1/devices/..!/decommission", .admin).json["code"] as? String == "invalid_device_id")
            #expect(try await api.ops.store.lastEventSequence() == before)

            let done = try await api.send("POST", "/v1/devices/d1/decommission", .admin)
            #expect(done.status == 200, "\(done.text)")
            #expect(done.json["device"] as? String == "d1")
            #expect(done.json["canceled_job"] as? String == job.id.rawValue)
            #expect((done.json["revocation"] as? [String: Any])?["already_revoked"] as? Bool == false, "\(done.text)")
            let shown = try await api.send("GET", "/v1/devices/d1", .read)
            #expect(shown.json["revoked_at"] != nil, "\(shown.text)")
            #expect(shown.json["groups"] as? [String] == [])
            #expect(shown.json["active_job"] == nil)
            let again = try await api.send("POST", "/v1/devices/d1/decommission", .admin)
            #expect((again.json["revocation"] as? [String: Any])?["already_revoked"] as? Bool == true, "\(again.text)")
            let events = try await api.ops.store.events(after: before, limit: 100)
            #expect(events.contains { $0.kind == .deviceRevoked && $0.actor == "token:t-admin" })
            #expect(events.filter { $0.kind != .jobTransition || $0.to == .canceled }.allSatisfy { $0.actor == "token:t-admin" || $0.actor == nil })
            #expect(events.contains { $0.kind == .jobTransition && $0.jobID == job.id && $0.actor == "token:t-admin" })
        }
    }

    @Test func versionStatsPerProductAsTheCLIPrintsThem() async throws {
        try await OperatorAPIServer.with { api in
            try await api.announce(["t1", "t2", "t3"], product: "thermo", version: "1.0")
            try await api.announce(["t4"], product: "thermo", version: "1.1")
            try await api.announce(["v1", "v2"], product: "valve", version: "3.0")
            let all = try await api.send("GET", "/v1/stats/versions", .read)
            #expect(all.status == 200, "\(all.text)")
            let rows = try #require(all.json["products"] as? [[String: Any]])
            #expect(rows.map { $0["product"] as? String } == ["thermo", "valve"])
            #expect(rows[0]["total"] as? Int == 4)
            let versions = try #require(rows[0]["versions"] as? [[String: Any]])
            #expect(versions.map { $0["version"] as? String } == ["1.0", "1.1"])
            #expect(versions.map { $0["devices"] as? Int } == [3, 1])
            #expect(versions.first?["fraction"] as? Double == 0.75)

            let top = try await api.send("GET", "/v1/stats/versions?product=thermo&top=1", .read)
            let only = try #require((top.json["products"] as? [[String: Any]])?.first)
            #expect((only["versions"] as? [Any])?.count == 1)
            #expect(only["others"] as? Int == 1)
            let none = try await api.send("GET", "/v1/stats/versions?product=pump", .read)
            #expect(((none.json["products"] as? [[String: Any]])?.first?["total"]) as? Int == 0, "\(none.text)")
            for (query, code) in [("top=0", "invalid_top"), ("top=101", "invalid_top"), ("product=..", "invalid_product"), ("top=x", "bad_request")] {
                let refused = try await api.send("GET", "/v1/stats/versions?\(query)", .read)
                #expect(refused.status == 400, "\(query): \(refused.text)")
                #expect(refused.json["code"] as? String == code, "\(query): \(refused.text)")
            }
            #expect(try await api.client.send("GET", "/v1/stats/versions").status == 401)
        }
    }
}
