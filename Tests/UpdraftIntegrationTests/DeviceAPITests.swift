import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// Devices over HTTP (`GET /v1/devices` filters and pages, `GET /v1/devices/{id}`, lock,
/// unlock, development, groups), carried out by the CLI's operations: each with its
/// hostile twins, and the token as the actor of every change.
@Suite(.timeLimit(.minutes(3))) struct DeviceAPITests {
    /// ids of a list answer.
    static func ids(_ response: HTTPTestResponse) -> [String] {
        (response.json["devices"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? []
    }

    /// Every page of `query` at `limit`, following `next_cursor` to the end.
    static func allPages(_ api: OperatorAPIServer, _ query: String, limit: Int) async throws -> [String] {
        var seen: [String] = []
        var cursor: String?
        for _ in 0..<100 {
            let page = try await api.send("GET", "/v1/devices?\(query)&limit=\(limit)" + (cursor.map { "&cursor=\($0)" } ?? ""), .read)
            #expect(page.status == 200, "\(page.text)")
            #expect(ids(page).count <= limit)
            seen += ids(page)
            cursor = page.json["next_cursor"] as? String
            if cursor == nil { break }
        }
        return seen
    }

    /// 30 devices: thermo 1.0/1.1 and valve 1.0, every third online, groups, and jobs
    /// (queued) for the thermo 1.0 devices with an even number.
    static func fleet(_ api: OperatorAPIServer) async throws -> [Device] {
        let devices = try (0..<30).map { n in
            Device(
                id: try DeviceID(validating: String(format: "d%02d", n)), product: n % 5 == 4 ? "valve" : "thermo",
                version: n % 5 == 4 || n % 2 == 0 ? "1.0" : "1.1", online: n % 3 == 0)
        }
        try await api.ops.store.commit(StoreBatch(devices: devices))
        #expect(try await api.upload(OperatorAPIServer.image(1200, seed: 40), product: "thermo", version: "2.0").status == 201)
        let east = devices.filter { Int($0.id.rawValue.dropFirst())! < 12 }.map { "\"\($0.id)\"" }.joined(separator: ",")
        #expect(try await api.send("POST", "/v1/groups/east/devices", .operate, json: #"{"devices":[\#(east)]}"#).status == 200)
        let targets = devices.filter { $0.product == "thermo" && $0.version == "1.0" && Int($0.id.rawValue.dropFirst())! % 4 == 0 }
        let list = targets.map { "\"\($0.id)\"" }.joined(separator: ",")
        let created = try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","devices":[\#(list)]}"#)
        #expect(created.status == 201, "\(created.text)")
        return devices
    }

    @Test func filtersCombineAndPagesNeitherRepeatNorSkip() async throws {
        try await OperatorAPIServer.with { api in
            let devices = try await Self.fleet(api)
            let profiles = try await api.ops.store.fleetProfiles()
            let jobs = Set(try await api.ops.store.activeJobs().map(\.deviceID))
            let cases: [(String, (Device) -> Bool)] = [
                ("product=thermo", { $0.product == "thermo" }),
                ("product=thermo&version=1.0", { $0.product == "thermo" && $0.version == "1.0" }),
                ("group=east&online=true", { profiles[$0.id]?.isMember(of: "east") == true && $0.online }),
                ("online=false&state=idle", { !$0.online && !jobs.contains($0.id) }),
                ("state=queued&product=thermo", { jobs.contains($0.id) && $0.product == "thermo" }),
                ("version=1.1&group=east&online=false", { $0.version == "1.1" && profiles[$0.id]?.isMember(of: "east") == true && !$0.online }),
                ("state=downloading", { _ in false }),
                ("group=nobody", { _ in false }),
            ]
            #expect(!jobs.isEmpty)
            for (query, rule) in cases {
                let expected = devices.filter(rule).map(\.id.rawValue).sorted()
                for limit in [1, 4, 1000] {
                    let seen = try await Self.allPages(api, query, limit: limit)
                    #expect(seen == expected, "\(query) limit \(limit)")
                }
            }
            let one = try await api.send("GET", "/v1/devices?product=thermo&limit=1", .read)
            let row = try #require((one.json["devices"] as? [[String: Any]])?.first)
            #expect(row["id"] as? String == "d00")
            #expect(row["groups"] as? [String] == ["east"])
            #expect(row["job_state"] as? String == "queued")
            #expect(row["development"] as? Bool == false)
        }
    }

    @Test func badFiltersAre400Problems() async throws {
        try await OperatorAPIServer.with { api in
            let refusals: [(String, String)] = [
                ("state=sleeping", "bad_request"), ("online=maybe", "bad_request"), ("limit=0", "invalid_limit"),
                ("cursor=..", "invalid_device_id"), ("group=a%2Fb", "invalid_group"), ("version=%20", "invalid_version"),
                ("product=..", "invalid_product"),
            ]
            for (query, code) in refusals {
                let response = try await api.send("GET", "/v1/devices?\(query)", .read)
                #expect(response.status == 400, "\(query): \(response.status) \(response.text)")
                #expect(response.header("content-type") == "application/problem+json")
                #expect(response.json["code"] as? String == code, "\(query): \(response.text)")
            }
        }
    }

    @Test func showExplainsWhatTheDeviceShouldRunWithItsJobAndHistory() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["d1", "d2"], version: "2.0", seed: 41)
            #expect(try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","devices":["d1"]}"#).status == 201)
            let shown = try await api.send("GET", "/v1/devices/d1", .read)
            #expect(shown.status == 200, "\(shown.text)")
            #expect(shown.json["id"] as? String == "d1")
            #expect(shown.json["product"] as? String == "thermo")
            #expect((shown.json["should_run"] as? String)?.hasPrefix("none: ") == true, "a one-off release is no rule: \(shown.text)")
            let job = try #require(shown.json["active_job"] as? [String: Any])
            #expect(job["state"] as? String == "queued")
            #expect(job["firmware"] as? String == "thermo@2.0")
            #expect((shown.json["history"] as? [[String: Any]])?.contains { $0["kind"] as? String == "job.created" } == true, "\(shown.text)")

            #expect(try await api.send("POST", "/v1/devices/d2/lock", .operate, json: #"{"firmware":"thermo@2.0"}"#).status == 200)
            #expect(try await api.send("PUT", "/v1/devices/d2/development", .operate, json: #"{"development":true}"#).status == 200)
            let locked = try await api.send("GET", "/v1/devices/d2?history=1", .read)
            #expect(locked.json["should_run"] as? String == "thermo@2.0: locked (now)", "\(locked.text)")
            #expect(locked.json["lock"] as? String == "thermo@2.0")
            #expect(locked.json["development"] as? Bool == true)
            let history = try #require(locked.json["history"] as? [[String: Any]])
            #expect(history.count == 1)
            #expect(history.first?["detail"] as? String == "development on")
            #expect(history.first?["actor"] as? String == "token:t-operate")
            #expect((try await api.send("GET", "/v1/devices/d2?history=0", .read).json["history"] as? [Any])?.isEmpty == true)

            let refusals: [(String, Int, String)] = [
                ("/v1/devices/nobody", 404, "device_not_found"), ("/v1/devices/..", 400, "invalid_device_id"),
                ("/v1/devices/d1?history=1001", 400, "invalid_history"), ("/v1/devices/d1?history=-1", 400, "invalid_history"),
                ("/v1/devices/d1?history=x", 400, "bad_request"),
            ]
            for (path, status, code) in refusals {
                let response = try await api.send("GET", path, .read)
                #expect(response.status == status, "\(path): \(response.text)")
                #expect(response.json["code"] as? String == code, "\(path): \(response.text)")
            }
        }
    }

    @Test func lockUnlockAndDevelopmentWithTheirHostileTwins() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["d1"], version: "2.0", seed: 42)
            #expect(try await api.upload(OperatorAPIServer.image(900, seed: 43), product: "valve", version: "1.0").status == 201)
            let before = try await api.ops.store.lastEventSequence()
            let refusals: [(String, String, TokenScope, String?, Int, String)] = [
                ("POST", "/v1/devices/d1/lock", .read, #"{"firmware":"thermo@2.0"}"#, 403, "insufficient_scope"),
                ("POST", "/v1/devices/d1/lock", .operate, #"{"firmware":"valve@1.0"}"#, 422, "product_mismatch"),
                ("POST", "/v1/devices/d1/lock", .operate, #"{"firmware":"thermo@9.9"}"#, 404, "firmware_not_found"),
                ("POST", "/v1/devices/d1/lock", .operate, #"{"firmware":"thermo"}"#, 400, "invalid_firmware_id"),
                ("POST", "/v1/devices/d1/lock", .operate, #"{"firmware":"thermo@2.0","delivery":"later"}"#, 400, "bad_request"),
                ("POST", "/v1/devices/d1/lock", .operate, #"{"firmware":"thermo@2.0","force":true}"#, 400, "bad_request"),
                ("POST", "/v1/devices/d1/lock", .operate, #"{"firmware":"#, 400, "bad_request"),
                ("POST", "/v1/devices/ghost/lock", .operate, #"{"firmware":"thermo@2.0"}"#, 404, "device_not_found"),
                ("POST", "/v1/devices/d1/unlock", .operate, nil, 409, "not_locked"),
                ("POST", "/v1/devices/ghost/unlock", .operate, nil, 404, "device_not_found"),
                ("POST", "/v1/devices/d1/unlock", .read, nil, 403, "insufficient_scope"),
                ("PUT", "/v1/devices/d1/development", .operate, #"{"development":"yes"}"#, 400, "bad_request"),
                ("PUT", "/v1/devices/d1/development", .operate, "{}", 400, "bad_request"),
                ("PUT", "/v1/devices/ghost/development", .operate, #"{"development":true}"#, 404, "device_not_found"),
                ("PUT", "/v1/devices/d1/development", .read, #"{"development":true}"#, 403, "insufficient_scope"),
            ]
            for (method, path, scope, body, status, code) in refusals {
                let response = try await api.send(method, path, scope, json: body)
                #expect(response.status == status, "\(method) \(path) \(body ?? ""): \(response.status) \(response.text)")
                #expect(response.json["code"] as? String == code, "\(method) \(path) \(body ?? ""): \(response.text)")
            }
            let plain = try await api.client.send("POST", "/v1/devices/d1/lock", token: api.tokens[.operate]!, body: Array(#"{"firmware":"thermo@2.0"}"#.utf8))
            #expect(plain.status == 415, "no Content-Type: \(plain.text)")
            // The CLI runs the same operation and refuses the same lock.
            let cli = await #expect(throws: UpdraftError.self) { try await api.ops.lock("d1", to: "valve@1.0", delivery: .now) }
            #expect(cli?.code == "product_mismatch")
            #expect(try await api.ops.store.lastEventSequence() == before, "a refused change recorded an event")

            let locked = try await api.send("POST", "/v1/devices/d1/lock", .operate, json: #"{"firmware":"thermo@2.0","delivery":"next_session"}"#)
            #expect(locked.status == 200, "\(locked.text)")
            #expect(locked.json["lock"] as? String == "thermo@2.0")
            #expect(locked.json["lock_delivery"] as? String == "next_session")
            let ghost = try await api.send("POST", "/v1/devices/ghost/lock", .operate, json: #"{"firmware":"thermo@2.0","allow_unknown":true}"#)
            #expect(ghost.status == 200, "\(ghost.text)")
            let unlocked = try await api.send("POST", "/v1/devices/d1/unlock", .operate)
            #expect(unlocked.status == 200, "\(unlocked.text)")
            #expect(unlocked.json["previous_lock"] as? String == "thermo@2.0")
            #expect(unlocked.json["lock"] == nil)
            #expect(try await api.send("POST", "/v1/devices/d1/unlock", .operate).json["code"] as? String == "not_locked")
            #expect(try await api.send("POST", "/v1/devices/ghost/unlock", .admin).status == 200, "a lock set before it connected")
            let dev = try await api.send("PUT", "/v1/devices/d1/development", .operate, json: #"{"development":true}"#)
            #expect(dev.json["development"] as? Bool == true, "\(dev.text)")
            #expect(try await api.send("PUT", "/v1/devices/d1/development", .operate, json: #"{"development":false}"#).json["development"] as? Bool == false)

            let commands = try await api.ops.store.events(after: before, limit: 100).filter { $0.kind == .fleetCommand }
            #expect(commands.compactMap(\.detail) == ["lock at next session", "lock now", "unlock", "unlock", "development on", "development off"])
            #expect(commands.map(\.actor) == ["token:t-operate", "token:t-operate", "token:t-operate", "token:t-admin", "token:t-operate", "token:t-operate"])
        }
    }

    @Test func groupsTakeManyDevicesInOneCallAfterCheckingEveryId() async throws {
        try await OperatorAPIServer.with { api in
            try await api.announce(["d1", "d2", "d3", "d4"])
            let before = try await api.ops.store.lastEventSequence()
            let refusals: [(String, TokenScope, String, Int, String)] = [
                ("/v1/groups/east/devices", .read, #"{"devices":["d1"]}"#, 403, "insufficient_scope"),
                ("/v1/groups/east/devices", .operate, #"{"devices":["d1","typo"]}"#, 422, "unknown_devices"),
                ("/v1/groups/east/devices", .operate, #"{"devices":[]}"#, 400, "invalid_devices"),
                ("/v1/groups/east/devices", .operate, #"{"devices":["d1",".."]}"#, 400, "invalid_device_id"),
                ("/v1/groups/east/devices", .operate, #"{"devices":"d1"}"#, 400, "bad_request"),
                ("/v1/groups/east/devices", .operate, #"{"device":["d1"]}"#, 400, "bad_request"),
                ("/v1/groups/..!/devices", .operate, #"{"devices":["d1"]}"#, 400, "invalid_group"),
                ("/v1/groups/east/devices/remove", .operate, #"{"devices":["d1"]}"#, 404, "group_not_found"),
                ("/v1/groups/east/devices/remove", .read, #"{"devices":["d1"]}"#, 403, "insufficient_scope"),
            ]
            for (path, scope, body, status, code) in refusals {
                let response = try await api.send("POST", path, scope, json: body)
                #expect(response.status == status, "\(path) \(body): \(response.status) \(response.text)")
                #expect(response.json["code"] as? String == code, "\(path) \(body): \(response.text)")
            }
            #expect(try await api.ops.store.lastEventSequence() == before, "a refused change recorded an event")
            #expect(try await api.ops.store.fleetProfiles().values.allSatisfy { $0.groups.isEmpty })

            let added = try await api.send("POST", "/v1/groups/east/devices", .operate, json: #"{"devices":["d1","d2","d3","d2"]}"#)
            #expect(added.status == 200, "\(added.text)")
            #expect(added.json["changed"] as? [String] == ["d1", "d2", "d3"])
            let again = try await api.send("POST", "/v1/groups/east/devices", .operate, json: #"{"devices":["d3","d4","new"],"allow_unknown":true}"#)
            #expect(again.json["changed"] as? [String] == ["d4", "new"], "\(again.text)")
            #expect(again.json["unchanged"] as? [String] == ["d3"])
            // A device named before it connected enters the registry with its fleet facts.
            let members = DeviceAPITests.ids(try await api.send("GET", "/v1/devices?group=east", .read))
            #expect(members == ["d1", "d2", "d3", "d4", "new"], "\(members)")

            let removed = try await api.send("POST", "/v1/groups/east/devices/remove", .admin, json: #"{"devices":["d1","d4","nobody"]}"#)
            #expect(removed.status == 200, "\(removed.text)")
            #expect(removed.json["changed"] as? [String] == ["d1", "d4"])
            #expect(removed.json["unchanged"] as? [String] == ["nobody"])
            let left = DeviceAPITests.ids(try await api.send("GET", "/v1/devices?group=east", .read))
            #expect(left == ["d2", "d3", "new"], "\(left)")
            let commands = try await api.ops.store.events(after: before, limit: 100).filter { $0.kind == .fleetCommand }
            #expect(commands.count == 7, "one event per device changed: \(commands.compactMap(\.detail))")
            #expect(commands.map(\.actor).filter { $0 == "token:t-operate" }.count == 5)
            #expect(commands.map(\.actor).filter { $0 == "token:t-admin" }.count == 2)
        }
    }
}
