import Foundation
import GRDB
import Logging
import UpdraftCore

/// The status store in one SQLite file (WAL mode), through a GRDB `DatabasePool`.
///
/// Several processes may open the same file at once (a running gateway and the CLI):
/// every write is an IMMEDIATE transaction that waits up to ``busyTimeout`` for the
/// other writer, and event sequence numbers are assigned inside that transaction, so
/// the event log stays gap-free and in commit order across processes.
public final class SQLiteStatusStore: StatusStore, Sendable {
    /// How long a write waits for another connection's write lock before failing with `store_busy`.
    public static let busyTimeout: TimeInterval = 5

    /// The migrations this build knows, in order.
    public static var migrationIdentifiers: [String] { Schema.migrator.migrations }

    public let path: String
    let pool: DatabasePool
    let logger: Logger

    /// Opens the database at `path` and applies pending migrations.
    ///
    /// - Parameter create: make a fresh store when there is no file at `path`; read-only
    ///   commands pass false so that a mistyped data directory is an error, not an empty fleet.
    ///
    /// Throws `UpdraftError` (`store_missing`, `store_empty`, `store_foreign`,
    /// `store_unwritable`, `store_corrupt`, `store_schema_newer`, ...). An existing file is
    /// never replaced.
    public init(path: String, create: Bool = true, logger: Logger) throws {
        self.path = path
        var logger = logger
        logger[metadataKey: "store.path"] = "\(path)"
        self.logger = logger

        var configuration = Configuration()
        configuration.label = "updraft.store"
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(Self.busyTimeout)
        configuration.prepareDatabase { db in
            // In WAL mode NORMAL is durable across application crashes; only a power loss
            // may drop the last commits, and it never corrupts the file.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        try StoreFile.prepare(path: path, create: create) { try Self.migrate($0, logger: logger) }
        do {
            // DatabasePool puts the file in WAL mode.
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrate(pool, logger: logger)
        } catch {
            throw StoreErrors.map(error, path: path, busyTimeout: Self.busyTimeout)
        }
    }

    /// SQLite's `PRAGMA quick_check` (every page readable and well-formed, without the
    /// index cross-checks of integrity_check): `updraft serve` refuses a damaged store at
    /// start instead of failing on whichever page a device happens to touch.
    public func quickCheck() throws {
        let problems: [String]
        do {
            problems = try pool.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check(5)") }
        } catch {
            throw mapped(error)
        }
        guard problems != ["ok"] else { return }
        throw UpdraftError(
            "store_corrupt",
            "The status database \(path) is damaged (SQLite quick_check: \(problems.joined(separator: "; ").prefix(300))). Stop updraft and restore the file from a backup; `sqlite3 \(path) .recover` may save what is left."
        )
    }

    /// Closes the connections. Later calls fail; deinit closes them too.
    public func close() throws {
        do { try pool.close() } catch { throw mapped(error) }
    }

    /// The migrations applied to the file, in order.
    public func appliedMigrations() async throws -> [String] {
        try await read { db in try Schema.migrator.appliedMigrations(db) }
    }

    /// Reads a pragma on the writer connection (diagnostics and tests). Readers have
    /// GRDB's own busy timeout for the rare cases a WAL reader waits.
    func pragma(_ name: String) async throws -> String? {
        do {
            return try await pool.writeWithoutTransaction { db in try String.fetchOne(db, sql: "PRAGMA \(name)") }
        } catch {
            throw mapped(error)
        }
    }

    /// Caps the file at its current size on the writer connection (SQLite's
    /// `max_page_count`; false lifts the cap). Tests only: a full disk, for real, without root.
    func capSizeForTesting(_ capped: Bool) async throws {
        _ = try await pool.writeWithoutTransaction { db in
            try Int.fetchOne(db, sql: capped ? "PRAGMA max_page_count = 1" : "PRAGMA max_page_count = 1073741823")
        }
    }

    /// Runs raw SQL in a write transaction. Tests only: simulate other binaries' writes.
    func executeForTesting(_ sql: String) async throws {
        try await write { db in try db.execute(sql: sql) }
    }

    // MARK: Migrations

    static func migrate(_ pool: DatabasePool, logger: Logger) throws {
        let migrator = Schema.migrator
        let before = try pool.read { db in try migrator.appliedIdentifiers(db) }
        var retries = 0
        while true {
            do {
                try migrator.migrate(pool)
                break
            } catch let error as DatabaseError
                where retries < migrator.migrations.count
                && (error.resultCode == .SQLITE_ERROR || error.resultCode == .SQLITE_CONSTRAINT)
            {
                // Two processes opening a fresh file race: the other one committed a
                // migration after we read grdb_migrations ("table already exists").
                // Each retry re-reads the applied list; each lost race means the other
                // process made progress, so this ends within one retry per migration.
                retries += 1
                logger.debug(
                    "Migration raced with another process; retrying",
                    metadata: ["error": "\(error.message ?? "")", "store.retry": "\(retries)"])
            }
        }
        let (superseded, after) = try pool.read { db in
            (try migrator.hasBeenSuperseded(db), try migrator.appliedIdentifiers(db))
        }
        if superseded {
            let unknown = after.subtracting(migrator.migrations)
            throw UpdraftError(
                "store_schema_newer",
                "The status database was migrated by a newer updraft (unknown migrations: \(unknown.sorted().joined(separator: ", "))). Upgrade this updraft binary; schema changes are forward-only."
            )
        }
        let applied = migrator.migrations.filter { after.contains($0) && !before.contains($0) }
        if !applied.isEmpty {
            logger.info("Migrated status database", metadata: ["store.migrations": "\(applied.joined(separator: ","))"])
        }
    }

    // MARK: Transactions

    func mapped(_ error: any Error) -> any Error {
        StoreErrors.map(error, path: path, busyTimeout: Self.busyTimeout)
    }

    /// Runs `body` in one IMMEDIATE transaction: the write lock is taken up front, so a
    /// concurrent writer in another process waits (busy timeout) instead of failing
    /// with SQLITE_BUSY when a deferred transaction would upgrade from read to write.
    func write<T: Sendable>(_ body: @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch {
            throw mapped(error)
        }
    }

    func read<T: Sendable>(_ body: @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch {
            throw mapped(error)
        }
    }

    // MARK: Catalog

    public func addFirmware(
        product: ProductID, version: FirmwareVersion, sha256: String, actor: String?,
        make: @Sendable (_ sequence: Int64) throws -> Firmware
    ) async throws -> FirmwareAddResult {
        let result = try await write { db -> FirmwareAddResult in
            if let row = try Row.fetchOne(
                db, sql: "SELECT \(Rows.firmwareColumns) FROM firmware WHERE product = ? AND version = ?",
                arguments: [product.rawValue, version.rawValue])
            {
                let existing = try Rows.firmware(row)
                guard existing.sha256.lowercased() == sha256.lowercased() else {
                    throw UpdraftError(
                        "firmware_conflict",
                        "\(existing.id) already exists with other content (sha256 \(existing.sha256.prefix(16))…). Pick a new version; versions are immutable."
                    )
                }
                return .existing(existing)
            }
            let last = try Int64.fetchOne(
                db, sql: "SELECT coalesce(max(sequence), 0) FROM firmware WHERE product = ?",
                arguments: [product.rawValue])
            let sequence = (last ?? 0) + 1
            let firmware = try make(sequence)
            guard firmware.product == product, firmware.version == version, firmware.sequence >= sequence,
                firmware.sha256.lowercased() == sha256.lowercased()
            else {
                throw UpdraftError(
                    "firmware_mismatch",
                    "Internal error: the firmware built for \(FirmwareID(product: product, version: version)) sequence \(sequence) does not match it. Please report this."
                )
            }
            try Rows.insert(firmware, db)
            _ = try Rows.append(
                [
                    UpdraftEvent(
                        kind: .firmwareAdded, time: firmware.createdAt, firmwareID: firmware.id,
                        detail: "sequence \(firmware.sequence), \(firmware.size) bytes, sha256 \(firmware.sha256)", actor: actor)
                ], db)
            return .added(firmware)
        }
        if case .added(let firmware) = result {
            logger.info(
                "Added firmware",
                metadata: ["firmware.id": "\(firmware.id)", "firmware.sequence": "\(firmware.sequence)"])
        }
        return result
    }

    public func firmware(id: FirmwareID) async throws -> Firmware? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Rows.firmwareColumns) FROM firmware WHERE id = ?", arguments: [id.rawValue])
                .map(Rows.firmware)
        }
    }

    public func firmwareList(product: ProductID?) async throws -> [Firmware] {
        try await read { db in
            let rows: [Row]
            if let product {
                rows = try Row.fetchAll(
                    db, sql: "SELECT \(Rows.firmwareColumns) FROM firmware WHERE product = ? ORDER BY sequence",
                    arguments: [product.rawValue])
            } else {
                rows = try Row.fetchAll(
                    db, sql: "SELECT \(Rows.firmwareColumns) FROM firmware ORDER BY product, sequence")
            }
            return try rows.map(Rows.firmware)
        }
    }

    // MARK: Registry

    public func device(_ id: DeviceID) async throws -> Device? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Rows.deviceColumns) FROM devices WHERE id = ?", arguments: [id.rawValue])
                .map(Rows.device)
        }
    }

    public func devices() async throws -> [Device] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT \(Rows.deviceColumns) FROM devices ORDER BY id").map(Rows.device)
        }
    }

    // MARK: Releases and jobs

    public func createRelease(_ release: Release, firmware: Firmware, actor: String?) async throws -> ReleasePlan {
        let plan = try await write { db -> ReleasePlan in
            guard release.firmwareID == firmware.id else {
                throw UpdraftError(
                    "release_firmware_mismatch",
                    "Internal error: release \(release.id) names firmware \(release.firmwareID) but was planned with \(firmware.id). Please report this."
                )
            }
            guard
                let stored = try Row.fetchOne(
                    db, sql: "SELECT \(Rows.firmwareColumns) FROM firmware WHERE id = ?", arguments: [firmware.id.rawValue]
                ).map(Rows.firmware)
            else {
                throw UpdraftError.notFound(
                    "firmware", firmware.id.rawValue, hint: "Add it with `updraft firmware add`, or list the catalog with `updraft firmware list`.")
            }
            // Plan against the firmware as the catalog holds it (its sequence decides downgrades).
            let snapshot = try ReleaseSnapshot.load(target: release.target, db)
            let plan = ReleasePlanner.plan(
                release: release, firmware: stored, devices: snapshot.devices, activeJobs: snapshot.activeJobs,
                sequenceOf: { product, version in snapshot.sequences[product]?[version] })

            // Devices named before they ever connected: the registry knows them from now on.
            for id in plan.unknownDevices {
                try db.execute(
                    sql: "INSERT INTO devices (id, accepts_updates, online) VALUES (?, 1, 0) ON CONFLICT (id) DO NOTHING",
                    arguments: [id.rawValue])
            }
            try Rows.insert(release, db)
            for job in plan.jobs { try Rows.upsert(job, db) }

            var events = [
                UpdraftEvent(
                    kind: .releaseCreated, time: release.createdAt, releaseID: release.id, firmwareID: stored.id,
                    detail:
                        "\(release.target.summary): \(plan.jobs.count) jobs, \(plan.skipped.count) skipped, \(plan.unknownDevices.count) unknown devices"
                )
            ]
            events += plan.jobs.map { UpdraftEvent.job(.jobCreated, $0, time: release.createdAt) }
            _ = try Rows.append(events.map { $0.by(actor) }, db)
            return plan
        }
        logger.info(
            "Created release",
            metadata: [
                "release.id": "\(release.id)", "firmware.id": "\(firmware.id)", "release.jobs": "\(plan.jobs.count)",
                "release.skipped": "\(plan.skipped.count)",
            ])
        return plan
    }

    public func releases() async throws -> [Release] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Rows.releaseColumns) FROM releases WHERE id NOT IN (SELECT id FROM fleet_releases)
                    ORDER BY created_at DESC, rowid DESC
                    """
            ).map(Rows.release)
        }
    }

    public func job(_ id: JobID) async throws -> Job? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Rows.jobColumns) FROM jobs WHERE id = ?", arguments: [id.rawValue])
                .map(Rows.job)
        }
    }

    public func jobs(release: ReleaseID) async throws -> [Job] {
        try await read { db in
            try Row.fetchAll(
                db, sql: "SELECT \(Rows.jobColumns) FROM jobs WHERE release_id = ? ORDER BY created_at, rowid",
                arguments: [release.rawValue]
            ).map(Rows.job)
        }
    }

    public func activeJobs() async throws -> [Job] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Rows.jobColumns) FROM jobs WHERE state NOT IN \(Schema.terminalStatesSQL)
                    ORDER BY created_at, rowid
                    """
            ).map(Rows.job)
        }
    }

    // MARK: Gateway writes

    @discardableResult
    public func commit(_ batch: StoreBatch) async throws -> [UpdraftEvent] {
        if batch.isEmpty { return [] }
        return try await write { db in try Self.apply(batch, isolatingRefusals: false, db).events }
    }

    public func commitIsolatingRefusals(_ batch: StoreBatch) async throws -> CommitResult {
        if batch.isEmpty { return CommitResult() }
        return try await write { db in try Self.apply(batch, isolatingRefusals: true, db) }
    }

    /// The body of ``commit(_:)``, inside an open write transaction. When isolating, a
    /// job whose write breaks a constraint is left out: SQLite undoes only the failing
    /// statement (ON CONFLICT ABORT), so the transaction goes on with the rest.
    static func apply(_ batch: StoreBatch, isolatingRefusals: Bool, _ db: Database) throws -> CommitResult {
        for device in batch.devices { try Rows.upsert(device, db) }
        try FleetRows.write(batch, db)
        // Terminal jobs first: a batch that ends a device's job and creates its next
        // one must free the one-active-job slot before taking it.
        let jobs = batch.jobs.filter(\.state.isTerminal) + batch.jobs.filter { !$0.state.isTerminal }
        var refused: [RefusedJob] = []
        for job in jobs {
            do {
                try Rows.upsert(job, db)
            } catch let error as DatabaseError {
                let explained = try Self.explain(error, writing: job, db)
                guard isolatingRefusals, error.resultCode == .SQLITE_CONSTRAINT, let reason = explained as? UpdraftError
                else { throw explained }
                refused.append(RefusedJob(job: job, error: reason))
            }
        }
        try FleetRows.writeActivity(batch, skipping: Set(refused.map(\.job.id)), db)
        return CommitResult(events: try Rows.append(batch.events, db), refused: refused)
    }

    static func explain(_ error: DatabaseError, writing job: Job, _ db: Database) throws -> any Error {
        switch error.extendedResultCode {
        case .SQLITE_CONSTRAINT_UNIQUE:
            let other = try String.fetchOne(
                db,
                sql: "SELECT id FROM jobs WHERE device_id = ? AND id != ? AND state NOT IN \(Schema.terminalStatesSQL)",
                arguments: [job.deviceID.rawValue, job.id.rawValue])
            return UpdraftError(
                "active_job_exists",
                "Device \(job.deviceID) already has active job \(other ?? "?"); job \(job.id) cannot be active too (one job per device). Cancel or finish the other job first."
            )
        case .SQLITE_CONSTRAINT_FOREIGNKEY:
            return UpdraftError(
                "store_reference",
                "Job \(job.id) refers to a device (\(job.deviceID)), release (\(job.releaseID)) or firmware (\(job.firmwareID)) that the store does not have."
            )
        default:
            return error
        }
    }
}

/// What release planning needs to know about the fleet, read inside the write transaction.
struct ReleaseSnapshot {
    var devices: [DeviceID: Device] = [:]
    var activeJobs: [DeviceID: JobID] = [:]
    var sequences: [ProductID: [FirmwareVersion: Int64]] = [:]

    /// Bound parameters per `IN (...)` list, well under SQLite's limit.
    static let chunkSize = 500

    static func load(target: ReleaseTarget, _ db: Database) throws -> ReleaseSnapshot {
        var snapshot = ReleaseSnapshot()
        switch target {
        case .devices(let ids):
            let unique = Array(Set(ids.map(\.rawValue)))
            for start in stride(from: 0, to: unique.count, by: chunkSize) {
                let chunk = Array(unique[start..<min(start + chunkSize, unique.count)])
                let rows = try Row.fetchAll(
                    db, sql: "SELECT \(Rows.deviceColumns) FROM devices WHERE id IN (\(placeholders(chunk.count)))",
                    arguments: StatementArguments(chunk))
                for row in rows {
                    let device = try Rows.device(row)
                    snapshot.devices[device.id] = device
                }
            }
        case .product(let product):
            let rows = try Row.fetchAll(
                db, sql: "SELECT \(Rows.deviceColumns) FROM devices WHERE product = ?", arguments: [product.rawValue])
            for row in rows {
                let device = try Rows.device(row)
                snapshot.devices[device.id] = device
            }
        }

        // Active jobs are at most one per device, so reading them all is bounded by the fleet.
        let active = try Row.fetchAll(
            db, sql: "SELECT device_id, id FROM jobs WHERE state NOT IN \(Schema.terminalStatesSQL)")
        let targeted: Set<DeviceID>
        switch target {
        case .devices(let ids): targeted = Set(ids)
        case .product: targeted = Set(snapshot.devices.keys)
        }
        for row in active {
            let device: DeviceID = try row.identifier("device_id")
            if targeted.contains(device) { snapshot.activeJobs[device] = try row.identifier("id") }
        }

        let products = Array(Set(snapshot.devices.values.compactMap(\.product?.rawValue)))
        if !products.isEmpty {
            let rows = try Row.fetchAll(
                db,
                sql: "SELECT product, version, sequence FROM firmware WHERE product IN (\(placeholders(products.count)))",
                arguments: StatementArguments(products))
            for row in rows {
                let product: ProductID = try row.identifier("product")
                let version: FirmwareVersion = try row.identifier("version")
                snapshot.sequences[product, default: [:]][version] = try row.int64("sequence")
            }
        }
        return snapshot
    }

    static func placeholders(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ",")
    }
}
