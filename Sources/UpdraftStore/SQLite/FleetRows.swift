import Foundation
import GRDB
import UpdraftCore

/// Fleet state as JSON documents: releases, device profiles, firmware verification.
enum FleetRows {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static func encode<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw StoreErrors.corrupt(what, String(text.prefix(80)))
        }
    }

    /// The fleet parts of a batch, written before its jobs (which may refer to a new release).
    static func write(_ batch: StoreBatch, _ db: Database) throws {
        for release in batch.fleetReleases {
            if let base = batch.fleetReleaseBases[release.id], let stored = try Self.release(release.id, db), stored != base {
                continue
            }
            try upsert(release, db)
        }
        for verification in batch.verifications { try upsert(verification, db) }
    }

    static func upsert(_ release: FleetRelease, _ db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO releases (id, firmware_id, target, allow_downgrade, created_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (id) DO NOTHING
                """,
            arguments: [
                release.id.rawValue, release.firmware.id.rawValue, try encode(["fleet": release.target.summary]),
                release.allowDowngrade, release.createdAt.timeIntervalSince1970,
            ])
        if case .devices(let ids) = release.target {
            for id in ids { try ensureDevice(id, db) }
        }
        try db.execute(
            sql: """
                INSERT INTO fleet_releases (id, body, created_at) VALUES (?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET body = excluded.body
                """,
            arguments: [release.id.rawValue, try encode(release), release.createdAt.timeIntervalSince1970])
    }

    /// Activity and planner state, after the batch's jobs (activity rows refer to them).
    /// Ended jobs drop their activity: it only matters while a job runs.
    static func writeActivity(_ batch: StoreBatch, skipping refused: Set<JobID> = [], _ db: Database) throws {
        for (job, activity) in batch.activity where !refused.contains(job) {
            try db.cachedStatement(
                sql: """
                    INSERT INTO job_activity (job_id, body) VALUES (?, ?)
                    ON CONFLICT (job_id) DO UPDATE SET body = excluded.body
                    """).execute(
                arguments: [job.rawValue, try encode(activity)])
        }
        for job in batch.jobs where job.state.isTerminal {
            try db.cachedStatement(sql: "DELETE FROM job_activity WHERE job_id = ?").execute(arguments: [job.id.rawValue])
        }
        if let planner = batch.plannerState {
            try db.execute(
                sql: "INSERT INTO planner_state (id, body) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                arguments: [try encode(planner)])
        }
    }

    static func upsert(_ verification: FirmwareVerification, _ db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO firmware_verification (firmware_id, body) VALUES (?, ?)
                ON CONFLICT (firmware_id) DO UPDATE SET body = excluded.body
                """,
            arguments: [verification.firmwareID.rawValue, try encode(verification)])
    }

    static func upsert(_ profile: DeviceFleetProfile, device: DeviceID, _ db: Database) throws {
        try ensureDevice(device, db)
        try db.execute(
            sql: """
                INSERT INTO fleet_profiles (device_id, body) VALUES (?, ?)
                ON CONFLICT (device_id) DO UPDATE SET body = excluded.body
                """,
            arguments: [device.rawValue, try encode(profile)])
    }

    /// Devices named before they ever connected: the registry knows them from now on.
    static func ensureDevice(_ id: DeviceID, _ db: Database) throws {
        try db.cachedStatement(
            sql: "INSERT INTO devices (id, accepts_updates, online) VALUES (?, 1, 0) ON CONFLICT (id) DO NOTHING").execute(
            arguments: [id.rawValue])
    }

    static func release(_ id: ReleaseID, _ db: Database) throws -> FleetRelease? {
        try String.fetchOne(db, sql: "SELECT body FROM fleet_releases WHERE id = ?", arguments: [id.rawValue])
            .map { try decode(FleetRelease.self, $0, what: "fleet release") }
    }

    static func profile(_ id: DeviceID, _ db: Database) throws -> DeviceFleetProfile? {
        try String.fetchOne(db, sql: "SELECT body FROM fleet_profiles WHERE device_id = ?", arguments: [id.rawValue])
            .map { try decode(DeviceFleetProfile.self, $0, what: "fleet profile") }
    }

    static func verification(_ firmwareID: FirmwareID, _ db: Database) throws -> FirmwareVerification? {
        try String.fetchOne(db, sql: "SELECT body FROM firmware_verification WHERE firmware_id = ?", arguments: [firmwareID.rawValue])
            .map { try decode(FirmwareVerification.self, $0, what: "firmware verification") }
    }
}

extension SQLiteStatusStore {
    public func fleetProfiles() async throws -> [DeviceID: DeviceFleetProfile] {
        try await read { db in
            var profiles: [DeviceID: DeviceFleetProfile] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT device_id, body FROM fleet_profiles") {
                let id: DeviceID = try row.identifier("device_id")
                profiles[id] = try FleetRows.decode(DeviceFleetProfile.self, try row.text("body"), what: "fleet profile")
            }
            return profiles
        }
    }

    public func fleetReleases() async throws -> [FleetRelease] {
        try await read { db in
            try String.fetchAll(db, sql: "SELECT body FROM fleet_releases ORDER BY created_at, rowid")
                .map { try FleetRows.decode(FleetRelease.self, $0, what: "fleet release") }
        }
    }

    public func fleetRelease(_ id: ReleaseID) async throws -> FleetRelease? {
        try await read { db in try FleetRows.release(id, db) }
    }

    public func verification(firmwareID: FirmwareID) async throws -> FirmwareVerification? {
        try await read { db in try FleetRows.verification(firmwareID, db) }
    }

    public func verifications() async throws -> [FirmwareVerification] {
        try await read { db in
            try String.fetchAll(db, sql: "SELECT body FROM firmware_verification ORDER BY firmware_id")
                .map { try FleetRows.decode(FirmwareVerification.self, $0, what: "firmware verification") }
        }
    }

    public func jobActivity() async throws -> [JobID: JobActivity] {
        try await read { db in
            var activity: [JobID: JobActivity] = [:]
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT a.job_id, a.body FROM job_activity a JOIN jobs j ON j.id = a.job_id
                    WHERE j.state NOT IN \(Schema.terminalStatesSQL)
                    """)
            for row in rows {
                let id: JobID = try row.identifier("job_id")
                activity[id] = try FleetRows.decode(JobActivity.self, try row.text("body"), what: "job activity")
            }
            return activity
        }
    }

    public func plannerState() async throws -> FleetPlanner? {
        try await read { db in
            try String.fetchOne(db, sql: "SELECT body FROM planner_state WHERE id = 1")
                .map { try FleetRows.decode(FleetPlanner.self, $0, what: "planner state") }
        }
    }

    @discardableResult
    public func updateFleetRelease(
        _ id: ReleaseID, _ body: @Sendable (inout FleetRelease) throws -> [UpdraftEvent]
    ) async throws -> FleetRelease {
        try await write { db in
            guard var release = try FleetRows.release(id, db) else {
                throw UpdraftError.notFound("release", id.rawValue, hint: "List releases with `updraft release list`.")
            }
            let events = try body(&release)
            try FleetRows.upsert(release, db)
            _ = try Rows.append(events, db)
            return release
        }
    }

    @discardableResult
    public func updateFleetProfile(
        _ device: DeviceID, _ body: @Sendable (inout DeviceFleetProfile) throws -> StoreBatch
    ) async throws -> DeviceFleetProfile {
        try await write { db in
            var profile = try FleetRows.profile(device, db) ?? .default
            let batch = try body(&profile)
            try FleetRows.upsert(profile, device: device, db)
            _ = try Self.apply(batch, isolatingRefusals: false, db)
            return profile
        }
    }

    @discardableResult
    public func updateVerification(
        firmwareID: FirmwareID, _ body: @Sendable (inout FirmwareVerification) throws -> StoreBatch
    ) async throws -> FirmwareVerification {
        try await write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM firmware WHERE id = ?", arguments: [firmwareID.rawValue]) != nil else {
                throw UpdraftError.notFound("firmware", firmwareID.rawValue, hint: "List the catalog with `updraft firmware list`.")
            }
            var verification = try FleetRows.verification(firmwareID, db) ?? FirmwareVerification(firmwareID: firmwareID)
            let batch = try body(&verification)
            try FleetRows.upsert(verification, db)
            _ = try Self.apply(batch, isolatingRefusals: false, db)
            return verification
        }
    }
}
