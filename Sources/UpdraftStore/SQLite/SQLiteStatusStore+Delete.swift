import Foundation
import GRDB
import UpdraftCore

/// Removing what an operator added by mistake.
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
}
