import Foundation
import GRDB
import UpdraftCore

/// Removing what an operator added by mistake, and taking back a job.
extension SQLiteStatusStore {
    public func deleteFirmware(_ id: FirmwareID, actor: String?) async throws -> Firmware {
        try await write { db -> Firmware in
            guard
                let firmware = try Row.fetchOne(
                    db, sql: "SELECT \(Rows.firmwareColumns) FROM firmware WHERE id = ?", arguments: [id.rawValue]
                ).map(Rows.firmware)
            else {
                throw UpdraftError.notFound("firmware", id.rawValue, hint: "List the catalog with `updraft firmware list`.")
            }
            // Every release has a `releases` row (fleet, lock and verification releases too),
            // and every job belongs to one: this finds every user.
            if let release = try String.fetchOne(
                db, sql: "SELECT id FROM releases WHERE firmware_id = ? ORDER BY created_at LIMIT 1", arguments: [id.rawValue])
            {
                throw UpdraftError.firmwareInUse(id, release: try ReleaseID(validating: release))
            }
            try db.execute(sql: "DELETE FROM firmware_verification WHERE firmware_id = ?", arguments: [id.rawValue])
            try db.execute(sql: "DELETE FROM firmware WHERE id = ?", arguments: [id.rawValue])
            _ = try Rows.append(
                [UpdraftEvent(kind: .firmwareDeleted, time: Date(), firmwareID: id, detail: "sha256 \(firmware.sha256)", actor: actor)], db)
            return firmware
        }
    }

    @discardableResult
    public func updateJob(_ id: JobID, _ body: @Sendable (inout Job) throws -> StoreBatch) async throws -> Job {
        try await write { db -> Job in
            guard var job = try Row.fetchOne(db, sql: "SELECT \(Rows.jobColumns) FROM jobs WHERE id = ?", arguments: [id.rawValue]).map(Rows.job)
            else {
                throw UpdraftError.notFound("job", id.rawValue, hint: "Jobs are listed by `updraft release show RELEASE` and `updraft device show DEVICE`.")
            }
            var batch = try body(&job)
            batch.jobs.insert(job, at: 0)
            _ = try Self.apply(batch, isolatingRefusals: false, db)
            return job
        }
    }
}
