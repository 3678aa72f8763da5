import GRDB
import UpdraftCore

/// The event log and the cursors of its readers.
extension SQLiteStatusStore {
    // MARK: Event log

    public func events(after sequence: Int64, limit: Int) async throws -> [UpdraftEvent] {
        guard limit > 0 else { return [] }
        return try await read { db in
            try Row.fetchAll(
                db, sql: "SELECT \(Rows.eventColumns) FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                arguments: [sequence, limit]
            ).map(Rows.event)
        }
    }

    public func events(after sequence: Int64, through last: Int64, kinds: Set<EventKind>) async throws -> [UpdraftEvent] {
        guard last > sequence, !kinds.isEmpty else { return [] }
        let names = kinds.map(\.rawValue).sorted()
        return try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Rows.eventColumns) FROM events WHERE seq > ? AND seq <= ?
                    AND kind IN (\(ReleaseSnapshot.placeholders(names.count))) ORDER BY seq
                    """,
                arguments: StatementArguments([sequence, last]) + StatementArguments(names)
            ).map(Rows.event)
        }
    }

    public func lastEventSequence() async throws -> Int64 {
        try await read { db in try Int64.fetchOne(db, sql: "SELECT coalesce(max(seq), 0) FROM events") ?? 0 }
    }

    // MARK: Event cursors

    public func eventCursor(_ name: String) async throws -> Int64? {
        try await read { db in try Int64.fetchOne(db, sql: "SELECT seq FROM event_cursors WHERE name = ?", arguments: [name]) }
    }

    public func saveEventCursor(_ name: String, _ sequence: Int64) async throws {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO event_cursors (name, seq) VALUES (?, ?)
                    ON CONFLICT (name) DO UPDATE SET seq = max(seq, excluded.seq)
                    """,
                arguments: [name, sequence])
        }
    }
}
