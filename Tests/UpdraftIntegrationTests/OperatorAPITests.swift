import Foundation
import Testing
import UpdraftApp
import UpdraftCore
import UpdraftTestSupport

/// The operator's changes over HTTP, carried out by the CLI's own operations: each with
/// its hostile twins (wrong scope, unknown id, bad body, conflict), and the token's name
/// as the actor of what it changed.
@Suite(.timeLimit(.minutes(3))) struct OperatorAPITests {
    /// Every change endpoint with the least scope that may call it: each scope below it
    /// gets 403 (and changes nothing), that scope gets through the scope check.
    /// Every operation of openapi.yaml but /healthz (open to all), by the scope it needs;
    /// `theScopeMatrixCoversEveryOperationOfTheDocument` fails when one is missing.
    static let scopeMatrix: [(method: String, template: String, path: String, needs: TokenScope)] = [
        ("GET", "/readyz", "/readyz", .read), ("GET", "/metrics", "/metrics", .read),
        ("GET", "/openapi.yaml", "/openapi.yaml", .read),
        ("GET", "/v1/firmware", "/v1/firmware", .read),
        ("POST", "/v1/firmware", "/v1/firmware?product=thermo", .operate),
        ("GET", "/v1/firmware/{id}", "/v1/firmware/thermo@1.0", .read),
        ("POST", "/v1/firmware/{id}/verify", "/v1/firmware/thermo@1.0/verify", .operate),
        ("DELETE", "/v1/firmware/{id}", "/v1/firmware/thermo@9.9", .admin),
        ("GET", "/v1/devices", "/v1/devices", .read), ("GET", "/v1/devices/{id}", "/v1/devices/d-none", .read),
        ("GET", "/v1/releases", "/v1/releases", .read), ("POST", "/v1/releases", "/v1/releases", .operate),
        ("GET", "/v1/releases/{id}", "/v1/releases/r-none", .read),
        ("POST", "/v1/releases/{id}/pause", "/v1/releases/r-none/pause", .operate),
        ("POST", "/v1/releases/{id}/resume", "/v1/releases/r-none/resume", .operate),
        ("POST", "/v1/releases/{id}/advance", "/v1/releases/r-none/advance", .operate),
        ("POST", "/v1/releases/{id}/cancel", "/v1/releases/r-none/cancel", .operate),
        ("GET", "/v1/events", "/v1/events", .read),
        // With a bad Last-Event-ID (sent to every row) an allowed caller gets 400, not a stream.
        ("GET", "/v1/events/stream", "/v1/events/stream", .read),
        ("GET", "/v1/webhooks", "/v1/webhooks", .admin), ("POST", "/v1/webhooks", "/v1/webhooks", .admin),
        ("GET", "/v1/webhooks/{id}", "/v1/webhooks/99", .admin), ("DELETE", "/v1/webhooks/{id}", "/v1/webhooks/99", .admin),
        ("POST", "/v1/webhooks/{id}/enable", "/v1/webhooks/99/enable", .admin),
        ("GET", "/v1/tokens", "/v1/tokens", .admin),
        // Devices, groups, jobs, stats (DeviceAPITests, JobAPITests).
        ("GET", "/v1/devices", "/v1/devices?state=idle&online=false", .read),
        ("POST", "/v1/devices/{id}/lock", "/v1/devices/d-none/lock", .operate),
        ("POST", "/v1/devices/{id}/unlock", "/v1/devices/d-none/unlock", .operate),
        ("PUT", "/v1/devices/{id}/development", "/v1/devices/d-none/development", .operate),
        ("POST", "/v1/devices/{id}/decommission", "/v1/devices/d-none/decommission", .admin),
        ("POST", "/v1/groups/{group}/devices", "/v1/groups/g-none/devices", .operate),
        ("POST", "/v1/groups/{group}/devices/remove", "/v1/groups/g-none/devices/remove", .operate),
        ("GET", "/v1/jobs/{id}", "/v1/jobs/j-none", .read),
        ("POST", "/v1/jobs/{id}/cancel", "/v1/jobs/j-none/cancel", .operate),
        ("GET", "/v1/stats/versions", "/v1/stats/versions", .read),
    ]

    /// Operations no token is needed for.
    static let openOperations: Set<String> = ["GET /healthz"]

    /// Read from the document itself: a new endpoint without a row fails here.
    @Test func theScopeMatrixCoversEveryOperationOfTheDocument() throws {
        var operations: Set<String> = []
        var path = ""
        for line in try SourceScan.text("Sources/UpdraftHTTP/openapi.yaml").split(separator: "\n") {
            if let match = line.wholeMatch(of: #/  (\/\S*):/#) { path = String(match.output.1) }
            if let match = line.wholeMatch(of: #/    (get|post|put|patch|delete|head):/#) { operations.insert("\(match.output.1.uppercased()) \(path)") }
        }
        #expect(operations.count >= 26, "the scan found too few operations: \(operations.sorted())")
        let covered = Set(Self.scopeMatrix.map { "\($0.method) \($0.template)" }).union(Self.openOperations)
        #expect(operations.subtracting(covered).isEmpty, "operations without a scope-matrix row: \(operations.subtracting(covered).sorted())")
        #expect(covered.subtracting(operations).isEmpty, "rows of no operation: \(covered.subtracting(operations).sorted())")
    }

    @Test func theScopeMatrixOfEveryChange() async throws {
        try await OperatorAPIServer.with { api in
            #expect(try await api.upload(OperatorAPIServer.image(1000, seed: 1), product: "thermo", version: "1.0").status == 201)
            let events = try await api.ops.store.lastEventSequence()
            for (method, _, path, needs) in Self.scopeMatrix {
                let contentType = path.hasPrefix("/v1/firmware?") ? "application/octet-stream" : "application/json"
                let headers = [("Content-Type", contentType), ("Last-Event-ID", "not-a-seq")]
                for scope in TokenScope.allCases {
                    let response = try await api.client.send(method, path, token: api.tokens[scope]!, headers: headers, body: Array("{}".utf8))
                    if scope < needs {
                        #expect(response.status == 403, "\(method) \(path) as \(scope): \(response.status) \(response.text)")
                        #expect(response.json["code"] as? String == "insufficient_scope")
                    } else {
                        #expect(![401, 403].contains(response.status), "\(method) \(path) as \(scope): \(response.status) \(response.text)")
                    }
                }
                let anonymous = try await api.client.send(method, path, headers: headers, body: Array("{}".utf8))
                #expect(anonymous.status == 401, "\(method) \(path) without a token")
            }
            // The refused calls recorded nothing (the allowed ones above all failed on their input).
            #expect(try await api.ops.store.lastEventSequence() == events)
        }
    }

    @Test func everyChangeNamesTheTokenAsActorAndTheCLIItsUser() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["d1", "d2"], version: "2.0", seed: 2)
            let created = try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","devices":["d1","d2"]}"#)
            #expect(created.status == 201, "\(created.text)")
            let release = try #require(created.json["release"] as? String)
            let canceled = try await api.send("POST", "/v1/releases/\(release)/cancel", .admin)
            #expect(canceled.status == 200, "\(canceled.text)")
            // The same change from the local CLI's operations names the OS user.
            _ = try await api.ops.createRelease(firmwareID: "thermo@2.0", target: .devices(["d1"]), allowDowngrade: false)

            let events = try await api.ops.store.events(after: 0, limit: 1000)
            let added = try #require(events.first { $0.kind == .firmwareAdded })
            #expect(added.actor == "token:t-operate")
            let releases = events.filter { $0.kind == .releaseCreated }
            #expect(releases.map(\.actor) == ["token:t-operate", ActorName.localCLI().name])
            let cancels = events.filter { $0.kind == .jobTransition && $0.to == .canceled }
            #expect(cancels.count == 2)
            #expect(cancels.allSatisfy { $0.actor == "token:t-admin" }, "\(cancels.map(\.actor))")
            #expect(events.filter { $0.kind == .fleetCommand }.allSatisfy { $0.actor == "token:t-admin" })
            // And the API's event page shows it.
            let page = try await api.send("GET", "/v1/events?after=0&limit=100", .read)
            let first = (page.json["events"] as? [[String: Any]])?.first
            #expect(first?["kind"] as? String == "firmware.added")
            #expect(first?["actor"] as? String == "token:t-operate", "\(page.text.prefix(300))")
        }
    }

    @Test func uploadStreamsToDiskAndRefusesTooLargeWrongTypeAndHalfASigning() async throws {
        try await OperatorAPIServer.with { api in
            let image = OperatorAPIServer.image(40_000, seed: 3)
            let added = try await api.upload(image, product: "thermo", version: "1.0")
            #expect(added.status == 201, "\(added.text)")
            #expect(added.json["id"] as? String == "thermo@1.0")
            #expect(added.json["sha256"] as? String == Digest.sha256Hex(image))
            #expect(try await api.upload(image, product: "thermo", version: "1.0").status == 200, "same content: already there")
            let other = try await api.upload(OperatorAPIServer.image(100, seed: 9), product: "thermo", version: "1.0")
            #expect(other.status == 409, "a version is immutable: \(other.text)")
            let shown = try await api.send("GET", "/v1/firmware/thermo@1.0", .read)
            #expect(shown.status == 200)
            #expect(shown.json["verification"] as? String == "unverified")

            let limit = Int(OperatorAPIServer.maxImageBytes)
            // Content-Length past the limit: refused before reading.
            let declared = try await api.upload(OperatorAPIServer.image(limit + 1, seed: 4), product: "thermo", version: "2.0")
            #expect(declared.status == 413, "\(declared.text)")
            #expect(declared.json["code"] as? String == "firmware_too_large")
            // No length given (chunked): refused once the count passes the limit.
            let streamed = try await api.client.send(
                "POST", "/v1/firmware?product=thermo&version=2.1", token: api.tokens[.operate]!,
                headers: [("Content-Type", "application/octet-stream")], stream: (chunks: 40, size: 4096))
            #expect(streamed.status == 413, "\(streamed.text)")
            // Wrong or missing content type: 415.
            for type in ["text/plain", "application/json"] {
                let wrong = try await api.client.send(
                    "POST", "/v1/firmware?product=thermo&version=2.2", token: api.tokens[.operate]!, headers: [("Content-Type", type)], body: image)
                #expect(wrong.status == 415, "\(type): \(wrong.text)")
                #expect(wrong.json["code"] as? String == "unsupported_media_type")
            }
            let untyped = try await api.client.send("POST", "/v1/firmware?product=thermo&version=2.2", token: api.tokens[.operate]!, body: image)
            #expect(untyped.status == 415)
            // Neither or half of the signing inputs: each parameter valid, their combination refused (422).
            for query in ["", "?product=thermo", "?version=2.3"] {
                let half = try await api.client.send(
                    "POST", "/v1/firmware\(query)", token: api.tokens[.operate]!, headers: [("Content-Type", "application/octet-stream")], body: image)
                #expect(half.status == 422 && half.json["code"] as? String == "invalid_upload", "\(query): \(half.text)")
            }
            let empty = try await api.upload([], product: "thermo", version: "2.4")
            #expect([400, 422].contains(empty.status), "\(empty.text)")

            #expect(try await api.ops.store.firmwareList(product: nil).map(\.id.rawValue) == ["thermo@1.0"])
            let uploads = api.directory + "/firmware/uploads"
            #expect((try? FileManager.default.contentsOfDirectory(atPath: uploads)) ?? [] == [], "no partial upload left")
        }
    }

    @Test func aManifestSignedElsewhereIsTakenAndAForgedOrMismatchedOneRefused() async throws {
        try await OperatorAPIServer.with { api in
            let path = api.directory + "/fw-3.0.bin"
            let image = OperatorAPIServer.image(5000, seed: 5)
            try Data(image).write(to: URL(fileURLWithPath: path))
            let key = api.ops.keyFiles.signingKeyPath
            let signed = try OfflineSigner.sign(image: path, product: "thermo", version: "3.0", sequence: 100, keyPath: key).signed
            func headers(_ manifest: [UInt8], _ signature: [UInt8]) -> [(String, String)] {
                [
                    ("Content-Type", "application/octet-stream"), ("Updraft-Manifest", Data(manifest).base64EncodedString()),
                    ("Updraft-Signature", Data(signature).base64EncodedString()),
                ]
            }
            var forged = signed.signature
            forged[0] ^= 1
            let refusals: [(String, [UInt8], [(String, String)], Int)] = [
                ("forged signature", image, headers(signed.payload, forged), 422),
                ("another image", OperatorAPIServer.image(5000, seed: 6), headers(signed.payload, signed.signature), 422),
                ("not base64", image, [("Content-Type", "application/octet-stream"), ("Updraft-Manifest", "%%%"), ("Updraft-Signature", "%%%")], 400),
            ]
            for (what, body, fields, status) in refusals {
                let refused = try await api.client.send("POST", "/v1/firmware", token: api.tokens[.operate]!, headers: fields, body: body)
                #expect(refused.status == status, "\(what): \(refused.text)")
                // The server's own paths stay on the server.
                #expect(!refused.text.contains(api.directory) && !refused.text.contains(".part"), "\(what): \(refused.text)")
            }
            #expect(try await api.ops.store.firmwareList(product: nil).isEmpty)
            let taken = try await api.client.send(
                "POST", "/v1/firmware", token: api.tokens[.operate]!, headers: headers(signed.payload, signed.signature), body: image)
            #expect(taken.status == 201, "\(taken.text)")
            #expect(taken.json["sequence"] as? Int == 100)
        }
    }

    @Test func verifyThenDeleteOnlyWhatNoReleaseUses() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["bench-1"], version: "1.1", seed: 7)
            #expect(try await api.upload(OperatorAPIServer.image(3000, seed: 8), product: "thermo", version: "1.2").status == 201)
            let verify = try await api.send("POST", "/v1/firmware/thermo@1.1/verify", .operate, json: #"{"devices":["bench-1"]}"#)
            #expect(verify.status == 201, "\(verify.text)")
            #expect(verify.json["kind"] as? String == "verification")
            #expect(verify.json["devices"] as? [String] == ["bench-1"])
            #expect(try await api.send("GET", "/v1/firmware/thermo@1.1", .read).json["verification"] as? String == "verifying")
            let twice = try await api.send("POST", "/v1/firmware/thermo@1.1/verify", .operate, json: #"{"devices":["bench-1"]}"#)
            #expect(twice.status == 409, "\(twice.text)")
            #expect(try await api.send("POST", "/v1/firmware/thermo@7.7/verify", .operate, json: #"{"devices":["bench-1"]}"#).status == 404)
            let none = try await api.send("POST", "/v1/firmware/thermo@1.2/verify", .operate, json: #"{"devices":[]}"#)
            #expect(none.status == 422, "\(none.text)")
            #expect(try await api.send("POST", "/v1/firmware/thermo@1.2/verify", .operate, json: #"{"devices":"bench-1"}"#).status == 400)

            let inUse = try await api.send("DELETE", "/v1/firmware/thermo@1.1", .admin)
            #expect(inUse.status == 409, "\(inUse.text)")
            #expect(inUse.json["code"] as? String == "firmware_in_use")
            #expect(try await api.send("DELETE", "/v1/firmware/thermo@1.2", .operate).status == 403)
            let deleted = try await api.send("DELETE", "/v1/firmware/thermo@1.2", .admin)
            #expect(deleted.status == 200, "\(deleted.text)")
            #expect(try await api.send("GET", "/v1/firmware/thermo@1.2", .read).status == 404)
            #expect(try await api.send("DELETE", "/v1/firmware/thermo@1.2", .admin).status == 404)
            #expect(try await api.send("GET", "/v1/firmware/not-an-id", .read).status == 400)
            let gone = try await api.ops.store.events(after: 0, limit: 100).first { $0.kind == .firmwareDeleted }
            #expect(gone?.actor == "token:t-admin")
        }
    }

    @Test func aOneOffReleaseIsCreatedShownByPagesAndCanceled() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["d1", "d2", "d3"], version: "2.0", seed: 10)
            let created = try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","product":"thermo"}"#)
            #expect(created.status == 201, "\(created.text)")
            #expect(created.json["kind"] as? String == "one-off")
            #expect(created.json["jobs"] as? Int == 3)
            let id = try #require(created.json["release"] as? String)

            let first = try await api.send("GET", "/v1/releases/\(id)?limit=2", .read)
            #expect(first.status == 200, "\(first.text)")
            #expect(first.json["total"] as? Int == 3)
            #expect((first.json["counts"] as? [String: Int])?["queued"] == 3, "\(first.text)")
            #expect((first.json["devices"] as? [[String: Any]])?.compactMap { $0["device"] as? String } == ["d1", "d2"])
            let cursor = try #require(first.json["next_cursor"] as? String)
            let second = try await api.send("GET", "/v1/releases/\(id)?limit=2&cursor=\(cursor)", .read)
            #expect((second.json["devices"] as? [[String: Any]])?.compactMap { $0["device"] as? String } == ["d3"])
            #expect(second.json["next_cursor"] == nil)
            #expect(try await api.send("GET", "/v1/releases/\(id)?limit=0", .read).status == 400)

            let paused = try await api.send("POST", "/v1/releases/\(id)/pause", .operate)
            #expect(paused.status == 409, "\(paused.text)")
            #expect(paused.json["code"] as? String == "not_a_fleet_release")
            let canceled = try await api.send("POST", "/v1/releases/\(id)/cancel", .operate)
            #expect(canceled.status == 200, "\(canceled.text)")
            #expect((canceled.json["canceled_jobs"] as? [String])?.count == 3)
            let again = try await api.send("POST", "/v1/releases/\(id)/cancel", .operate)
            #expect(again.json["changed"] as? Bool == false)
            #expect(try await api.ops.store.activeJobs().isEmpty)
            for path in ["/v1/releases/r-none", "/v1/releases/r-none/cancel"] {
                let missing = try await api.send(path.hasSuffix("cancel") ? "POST" : "GET", path, .operate)
                #expect(missing.status == 404, "\(path)")
                #expect(missing.json["code"] as? String == "release_not_found")
            }
        }
    }

    @Test func aFleetReleaseTakesEveryCLIOptionAndItsCommands() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["d1", "d2"], version: "2.0", seed: 11)
            let unverified = try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","product":"thermo","fleet":true}"#)
            #expect(unverified.status == 409, "\(unverified.text)")
            let body = """
                {"firmware":"thermo@2.0","product":"thermo","source_versions":["1.0"],"membership":"static",
                 "start_at":"2030-01-01T00:00:00Z","retry_interval":300,"max_retries":4,"device_timeout":600,"rate":50,
                 "delivery":"gradual","stages":[10,50,100],"success_threshold":0.9,"error_threshold":0.2,"on_error":"abort",
                 "min_stage_duration":60,"force":true,"allow_downgrade":true}
                """
            let created = try await api.send("POST", "/v1/releases", .operate, json: body)
            #expect(created.status == 201, "\(created.text)")
            #expect(created.json["kind"] as? String == "fleet")
            let id = try ReleaseID(validating: try #require(created.json["release"] as? String))
            let stored = try #require(try await api.ops.store.fleetRelease(id))
            #expect(stored.policy.sourceVersions == ["1.0"])
            #expect(stored.policy.membership == .static)
            #expect(stored.policy.start == .at(try Date("2030-01-01T00:00:00Z", strategy: .iso8601)))
            #expect(stored.policy.retry == RetryPolicy(interval: 300, maxRetries: 4))
            #expect(stored.policy.deviceTimeout == 600)
            #expect(stored.policy.notificationsPerMinute == 50)
            #expect(stored.policy.delivery == .gradual)
            #expect(stored.rollout.policy == RolloutPolicy(stages: [10, 50, 100], successThreshold: 0.9, errorThreshold: 0.2, onError: .abort, minimumStageDuration: 60))
            #expect(stored.allowDowngrade)
            #expect(stored.forcedFrom != nil)

            let steps: [(String, Int, Bool?)] = [
                ("pause", 200, true), ("pause", 200, false), ("resume", 200, true), ("advance", 200, true), ("cancel", 200, true),
                ("cancel", 200, false), ("advance", 409, nil), ("resume", 409, nil),
            ]
            for (command, status, changed) in steps {
                let response = try await api.send("POST", "/v1/releases/\(id)/\(command)", .operate)
                #expect(response.status == status, "\(command): \(response.text)")
                if let changed { #expect(response.json["changed"] as? Bool == changed, "\(command): \(response.text)") }
            }
            let shown = try await api.send("GET", "/v1/releases/\(id)", .read)
            #expect(shown.json["phase"] as? String == "canceled", "\(shown.text)")
            #expect(shown.json["kind"] as? String == "fleet")
        }
    }

    /// Bad bodies: malformed JSON and unknown fields 400, a wrong content type 415,
    /// options out of range or excluding each other 422 (named as the JSON fields), an
    /// unknown firmware 404, devices that never connected 422. Nothing is created.
    @Test func releaseCreateRefusesBadBodies() async throws {
        try await OperatorAPIServer.with { api in
            try await api.catalog(devices: ["d1"], version: "2.0", seed: 12)
            let cases: [(String, String, Int, String?)] = [
                ("malformed", #"{"firmware":"thermo@2.0","#, 400, nil),
                ("unknown field", #"{"firmware":"thermo@2.0","product":"thermo","percentage":5}"#, 400, nil),
                ("wrong type", #"{"firmware":"thermo@2.0","devices":"d1"}"#, 400, nil),
                ("no target", #"{"firmware":"thermo@2.0"}"#, 422, "invalid_release_options"),
                ("two targets", #"{"firmware":"thermo@2.0","product":"thermo","devices":["d1"]}"#, 422, "invalid_release_options"),
                ("negative percent", #"{"firmware":"thermo@2.0","product":"thermo","percent":-5,"force":true}"#, 422, "invalid_release_options"),
                ("two selections", #"{"firmware":"thermo@2.0","product":"thermo","percent":5,"select_devices":["d1"],"force":true}"#, 422, nil),
                ("retries", #"{"firmware":"thermo@2.0","product":"thermo","max_retries":11,"force":true}"#, 422, nil),
                ("stages", #"{"firmware":"thermo@2.0","product":"thermo","stages":[50,10],"force":true}"#, 422, nil),
                ("unknown firmware", #"{"firmware":"thermo@9.9","product":"thermo"}"#, 404, "firmware_not_found"),
                ("bad firmware id", #"{"firmware":"thermo","product":"thermo"}"#, 400, nil),
                ("never connected", #"{"firmware":"thermo@2.0","devices":["ghost"]}"#, 422, "unknown_devices"),
                ("never connected, fleet", #"{"firmware":"thermo@2.0","devices":["ghost"],"force":true}"#, 422, "unknown_devices"),
            ]
            for (what, json, status, code) in cases {
                let response = try await api.send("POST", "/v1/releases", .operate, json: json)
                #expect(response.status == status, "\(what): \(response.status) \(response.text)")
                #expect(response.header("content-type") == "application/problem+json", "\(what)")
                if let code { #expect(response.json["code"] as? String == code, "\(what): \(response.text)") }
            }
            let percent = try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","product":"thermo","percent":-5,"force":true}"#)
            #expect((percent.json["detail"] as? String)?.contains("percent must be more than 0") == true, "\(percent.text)")
            #expect((percent.json["detail"] as? String)?.contains("--") == false, "names the JSON field, not the CLI flag")
            let typed = try await api.client.send(
                "POST", "/v1/releases", token: api.tokens[.operate]!, headers: [("Content-Type", "text/plain")],
                body: Array(#"{"firmware":"thermo@2.0","devices":["d1"]}"#.utf8))
            #expect(typed.status == 415)
            #expect(try await api.ops.store.releases().isEmpty)
            #expect(try await api.ops.store.fleetReleases().isEmpty)
            let allowed = try await api.send("POST", "/v1/releases", .operate, json: #"{"firmware":"thermo@2.0","devices":["ghost"],"allow_unknown":true}"#)
            #expect(allowed.status == 201, "\(allowed.text)")
            #expect(allowed.json["unknown_devices"] as? [String] == ["ghost"])
        }
    }
}
