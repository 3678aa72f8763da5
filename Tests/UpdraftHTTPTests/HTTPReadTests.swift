import Foundation
import Testing
import UpdraftCore
import UpdraftTestSupport

@testable import UpdraftHTTP

/// The /v1 reads: pages and filters over a real SQLite store, and bad input as 400s.
@Suite(.timeLimit(.minutes(2))) struct HTTPReadTests {
    /// Reading the log a page at a time by `next_after` gives every event once, in order.
    @Test func eventsPageByAfter() async throws {
        try await APIServer.with { api in
            let t0 = Date(timeIntervalSince1970: 1_700_000_000)
            let events = (0..<25).map { i in
                UpdraftEvent(kind: i % 2 == 0 ? .deviceOnline : .deviceOffline, time: t0.addingTimeInterval(Double(i)), deviceID: try! DeviceID(validating: "d-\(i)"))
            }
            try await api.store.commit(StoreBatch(events: events))
            var after: Int64 = 0
            var seen: [Int64] = []
            var pages = 0
            while true {
                let page = try await api.get("/v1/events?after=\(after)&limit=7", .read)
                #expect(page.status == 200)
                let rows = page.json["events"] as? [[String: Any]] ?? []
                seen += rows.compactMap { ($0["seq"] as? NSNumber)?.int64Value }
                let next = (page.json["next_after"] as? NSNumber)?.int64Value ?? -1
                if rows.isEmpty {
                    #expect(next == after, "an empty page keeps the cursor")
                    break
                }
                #expect(rows.first?["kind"] as? String == "device.online" || rows.first?["kind"] as? String == "device.offline")
                after = next
                pages += 1
                if pages > 10 { break }
            }
            #expect(seen == Array(1...25))
            #expect(pages == 4)
            // The same JSON fields as the events topic.
            let one = try await api.get("/v1/events?after=2&limit=1", .read)
            let event = (one.json["events"] as? [[String: Any]])?.first
            #expect(event?["seq"] as? Int == 3)
            #expect(event?["device"] as? String == "d-2")
            #expect(event?["time"] as? String == "2023-11-14T22:13:22Z")
        }
    }

    @Test func badPagingInputIsA400Problem() async throws {
        try await APIServer.with { api in
            for path in [
                "/v1/events?limit=0", "/v1/events?limit=1001", "/v1/events?after=-1", "/v1/events?limit=abc",
                "/v1/events?after=1e99", "/v1/devices?limit=0", "/v1/devices?cursor=%20bad", "/v1/firmware?product=a/b",
                "/v1/devices/bad%20id",
            ] {
                let response = try await api.get(path, .read)
                #expect(response.status == 400, "\(path): \(response.status) \(response.text)")
                #expect(response.header("content-type") == "application/problem+json", "\(path)")
                #expect((response.json["detail"] as? String)?.isEmpty == false, "\(path)")
            }
        }
    }

    @Test func devicesPageByIdAndFilterByProduct() async throws {
        try await APIServer.with { api in
            let devices = (0..<12).map { i in
                Device(
                    id: try! DeviceID(validating: String(format: "dev-%02d", i)), product: i % 3 == 0 ? "lamp" : "thermo",
                    version: "1.0", online: i == 4, transport: .mqtt)
            }
            try await api.store.commit(StoreBatch(devices: devices))
            var cursor: String?
            var ids: [String] = []
            for _ in 0..<10 {
                let page = try await api.get("/v1/devices?product=thermo&limit=3" + (cursor.map { "&cursor=\($0)" } ?? ""), .read)
                #expect(page.status == 200)
                let rows = page.json["devices"] as? [[String: Any]] ?? []
                #expect(rows.allSatisfy { $0["product"] as? String == "thermo" })
                ids += rows.compactMap { $0["id"] as? String }
                cursor = page.json["next_cursor"] as? String
                if cursor == nil { break }
            }
            #expect(ids == devices.filter { $0.product == "thermo" }.map(\.id.rawValue))
            let lamp = try await api.get("/v1/devices?product=lamp", .read)
            #expect((lamp.json["devices"] as? [[String: Any]])?.count == 4)
            #expect(lamp.json["next_cursor"] == nil)

            let one = try await api.get("/v1/devices/dev-04", .read)
            #expect(one.status == 200)
            #expect(one.json["online"] as? Bool == true)
            #expect(one.json["transport"] as? String == "mqtt")
            let missing = try await api.get("/v1/devices/nobody", .read)
            #expect(missing.status == 404)
            #expect(missing.json["code"] as? String == "device_not_found")
        }
    }

    @Test func unknownPathsAreNotFound() async throws {
        try await APIServer.with { api in
            let unversioned = try await api.get("/v2/devices", .admin)
            let nested = try await api.get("/v1/devices/a/b", .admin)
            #expect(unversioned.status == 404)
            #expect(nested.status == 404)
        }
    }
}
