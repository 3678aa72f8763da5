import Foundation
import GRDB
import UpdraftCore

// Mapping between rows and domain values. Dates are REAL seconds since 1970 (UTC):
// microsecond precision, readable with `datetime(x, 'unixepoch')`.

extension Date {
    var storeSeconds: Double { timeIntervalSince1970 }
    init(storeSeconds: Double) { self.init(timeIntervalSince1970: storeSeconds) }
}

extension Row {
    func text(_ column: String) throws -> String { try decode(String.self, forColumn: column) }
    func optionalText(_ column: String) throws -> String? { try decode(String?.self, forColumn: column) }
    func int64(_ column: String) throws -> Int64 { try decode(Int64.self, forColumn: column) }
    func bool(_ column: String) throws -> Bool { try decode(Bool.self, forColumn: column) }
    func date(_ column: String) throws -> Date { Date(storeSeconds: try decode(Double.self, forColumn: column)) }
    func optionalDate(_ column: String) throws -> Date? {
        try decode(Double?.self, forColumn: column).map(Date.init(storeSeconds:))
    }
    func bytes(_ column: String) throws -> [UInt8] { Array(try decode(Data.self, forColumn: column)) }

    func identifier<T: ValidatedIdentifier>(_ column: String, as type: T.Type = T.self) throws -> T {
        try optionalIdentifier(column) ?? { throw StoreErrors.corrupt(T.kind, nil) }()
    }

    func optionalIdentifier<T: ValidatedIdentifier>(_ column: String, as type: T.Type = T.self) throws -> T? {
        guard let text = try optionalText(column) else { return nil }
        guard let value = T(rawValue: text) else { throw StoreErrors.corrupt(T.kind, text) }
        return value
    }

    func firmwareID(_ column: String) throws -> FirmwareID {
        try optionalFirmwareID(column) ?? { throw StoreErrors.corrupt(FirmwareID.kind, nil) }()
    }

    func optionalFirmwareID(_ column: String) throws -> FirmwareID? {
        guard let text = try optionalText(column) else { return nil }
        guard let value = FirmwareID(rawValue: text) else { throw StoreErrors.corrupt(FirmwareID.kind, text) }
        return value
    }

    func optionalEnum<T: RawRepresentable>(_ column: String, as type: T.Type = T.self) throws -> T?
    where T.RawValue == String {
        guard let text = try optionalText(column) else { return nil }
        guard let value = T(rawValue: text) else { throw StoreErrors.corrupt(column, text) }
        return value
    }

    func enumValue<T: RawRepresentable>(_ column: String, as type: T.Type = T.self) throws -> T
    where T.RawValue == String {
        try optionalEnum(column) ?? { throw StoreErrors.corrupt(column, nil) }()
    }
}

enum Rows {
    static let firmwareColumns =
        "id, product, version, sequence, size, sha256, md5, created_at, manifest_payload, manifest_signature"

    static func firmware(_ row: Row) throws -> Firmware {
        Firmware(
            product: try row.identifier("product"), version: try row.identifier("version"),
            sequence: try row.int64("sequence"), size: try row.int64("size"), sha256: try row.text("sha256"),
            md5: try row.text("md5"), createdAt: try row.date("created_at"),
            manifest: SignedManifest(
                payload: try row.bytes("manifest_payload"), signature: try row.bytes("manifest_signature")))
    }

    static func insert(_ firmware: Firmware, _ db: Database) throws {
        try db.execute(
            sql: "INSERT INTO firmware (\(firmwareColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            arguments: [
                firmware.id.rawValue, firmware.product.rawValue, firmware.version.rawValue, firmware.sequence, firmware.size,
                firmware.sha256, firmware.md5, firmware.createdAt.storeSeconds, Data(firmware.manifest.payload),
                Data(firmware.manifest.signature),
            ])
    }

    static let deviceColumns = "id, product, version, accepts_updates, online, first_seen, last_seen, transport, boot"

    static func device(_ row: Row) throws -> Device {
        Device(
            id: try row.identifier("id"), product: try row.optionalIdentifier("product"),
            version: try row.optionalIdentifier("version"), acceptsUpdates: try row.bool("accepts_updates"),
            online: try row.bool("online"), firstSeen: try row.optionalDate("first_seen"),
            lastSeen: try row.optionalDate("last_seen"), transport: try row.optionalEnum("transport"),
            // The counter's bits as SQLite's signed 64-bit integer.
            boot: try row.decode(Int64?.self, forColumn: "boot").map { UInt64(bitPattern: $0) })
    }

    static func upsert(_ device: Device, _ db: Database) throws {
        // ON CONFLICT DO UPDATE, not INSERT OR REPLACE: a replace deletes the row first,
        // which the jobs' foreign key would refuse.
        try db.cachedStatement(
            sql: """
                INSERT INTO devices (\(deviceColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET
                    product = excluded.product, version = excluded.version,
                    accepts_updates = excluded.accepts_updates, online = excluded.online,
                    first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                    transport = excluded.transport, boot = excluded.boot
                """).execute(
            arguments: [
                device.id.rawValue, device.product?.rawValue, device.version?.rawValue, device.acceptsUpdates,
                device.online, device.firstSeen?.storeSeconds, device.lastSeen?.storeSeconds,
                device.transport?.rawValue, device.boot.map { Int64(bitPattern: $0) },
            ])
    }

    static let releaseColumns = "id, firmware_id, target, allow_downgrade, created_at"

    /// The target as JSON owned by the store (`{"devices":[...]}` or `{"product":"..."}`), so
    /// the column does not depend on how the core's enum happens to be encoded.
    struct TargetJSON: Codable {
        var devices: [String]?
        var product: String?
    }

    static func encodeTarget(_ target: ReleaseTarget) -> String {
        let json: TargetJSON
        switch target {
        case .devices(let ids): json = TargetJSON(devices: ids.map(\.rawValue))
        case .product(let product): json = TargetJSON(product: product.rawValue)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding optional strings cannot fail.
        return String(decoding: try! encoder.encode(json), as: UTF8.self)
    }

    static func decodeTarget(_ text: String) throws -> ReleaseTarget {
        guard let json = try? JSONDecoder().decode(TargetJSON.self, from: Data(text.utf8)) else {
            throw StoreErrors.corrupt("release target", text)
        }
        if let product = json.product {
            guard let product = ProductID(rawValue: product) else { throw StoreErrors.corrupt("product", product) }
            return .product(product)
        }
        if let devices = json.devices {
            return .devices(
                try devices.map { id in
                    guard let id = DeviceID(rawValue: id) else { throw StoreErrors.corrupt("device id", id) }
                    return id
                })
        }
        throw StoreErrors.corrupt("release target", text)
    }

    static func release(_ row: Row) throws -> Release {
        Release(
            id: try row.identifier("id"), firmwareID: try row.firmwareID("firmware_id"),
            target: try decodeTarget(try row.text("target")), allowDowngrade: try row.bool("allow_downgrade"),
            createdAt: try row.date("created_at"))
    }

    static func insert(_ release: Release, _ db: Database) throws {
        try db.execute(
            sql: "INSERT INTO releases (\(releaseColumns)) VALUES (?, ?, ?, ?, ?)",
            arguments: [
                release.id.rawValue, release.firmwareID.rawValue, encodeTarget(release.target), release.allowDowngrade,
                release.createdAt.storeSeconds,
            ])
    }

    static let jobColumns =
        "id, release_id, device_id, firmware_id, target_version, state, progress, failure, detail, created_at, updated_at"

    static func job(_ row: Row) throws -> Job {
        Job(
            id: try row.identifier("id"), releaseID: try row.identifier("release_id"),
            deviceID: try row.identifier("device_id"), firmwareID: try row.firmwareID("firmware_id"),
            targetVersion: try row.identifier("target_version"), state: try row.enumValue("state"),
            progress: Int(try row.int64("progress")), failure: try row.optionalEnum("failure"),
            detail: try row.optionalText("detail"), createdAt: try row.date("created_at"),
            updatedAt: try row.date("updated_at"))
    }

    static func upsert(_ job: Job, _ db: Database) throws {
        try db.cachedStatement(
            sql: """
                INSERT INTO jobs (\(jobColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET
                    release_id = excluded.release_id, device_id = excluded.device_id,
                    firmware_id = excluded.firmware_id, target_version = excluded.target_version,
                    state = excluded.state, progress = excluded.progress, failure = excluded.failure,
                    detail = excluded.detail, created_at = excluded.created_at, updated_at = excluded.updated_at
                """).execute(
            arguments: [
                job.id.rawValue, job.releaseID.rawValue, job.deviceID.rawValue, job.firmwareID.rawValue,
                job.targetVersion.rawValue, job.state.rawValue, job.progress, job.failure?.rawValue, job.detail,
                job.createdAt.storeSeconds, job.updatedAt.storeSeconds,
            ])
    }

    static let eventColumns =
        "seq, time, kind, device, job, release, firmware, from_state, to_state, progress, reason, detail, actor"

    static func event(_ row: Row) throws -> UpdraftEvent {
        UpdraftEvent(
            kind: try row.enumValue("kind"), time: try row.date("time"), deviceID: try row.optionalIdentifier("device"),
            jobID: try row.optionalIdentifier("job"), releaseID: try row.optionalIdentifier("release"),
            firmwareID: try row.optionalFirmwareID("firmware"), from: try row.optionalEnum("from_state"),
            to: try row.optionalEnum("to_state"), progress: try row.decode(Int?.self, forColumn: "progress"),
            reason: try row.optionalEnum("reason"), detail: try row.optionalText("detail"),
            actor: try row.optionalText("actor"), sequence: try row.int64("seq"))
    }

    /// Appends events with the next sequence numbers. Must run inside a write transaction:
    /// the writer lock is what makes max(seq)+1 gap-free and ordered across processes.
    static func append(_ events: [UpdraftEvent], _ db: Database) throws -> [UpdraftEvent] {
        guard !events.isEmpty else { return [] }
        precondition(db.isInsideTransaction, "events must be appended inside a write transaction")
        var next = try Int64.fetchOne(db, sql: "SELECT coalesce(max(seq), 0) FROM events")! + 1
        let statement = try db.cachedStatement(
            sql: "INSERT INTO events (\(eventColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        var stored: [UpdraftEvent] = []
        stored.reserveCapacity(events.count)
        for var event in events {
            event.sequence = next
            next += 1
            try statement.execute(arguments: [
                event.sequence, event.time.storeSeconds, event.kind.rawValue, event.deviceID?.rawValue,
                event.jobID?.rawValue, event.releaseID?.rawValue, event.firmwareID?.rawValue, event.from?.rawValue,
                event.to?.rawValue, event.progress, event.reason?.rawValue, event.detail, event.actor,
            ])
            stored.append(event)
        }
        return stored
    }
}
