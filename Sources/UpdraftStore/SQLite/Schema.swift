import GRDB

/// The SQLite schema, as named, forward-only migrations.
///
/// Migrations are history (GRDB's rule): a migration that shipped is never edited or
/// removed, and its SQL is literal, never built from app constants that may change
/// later; change the schema by appending a new one. Identifiers are stored in
/// `grdb_migrations`.
enum Schema {
    /// Job states in which a job no longer holds its device (see `JobState.isTerminal`).
    /// For queries only: the migrations spell out the list they shipped with.
    static let terminalStatesSQL = "('succeeded','failed','canceled')"

    /// Every migration of this build, in the order they apply.
    static let migrations: [(identifier: String, migrate: @Sendable (Database) throws -> Void)] = [
        ("v1-catalog", v1Catalog),
        ("v1-registry", v1Registry),
        ("v1-jobs", v1Jobs),
        ("v1-events", v1Events),
        ("v2-device-transport", v2DeviceTransport),
        ("v3-fleet", v3Fleet),
        ("v4-fleet-activity", v4FleetActivity),
        ("v5-device-boot", v5DeviceBoot),
        ("v6-event-cursors", v6EventCursors),
        ("v7-device-transport-unchecked", v7DeviceTransportUnchecked),
        ("v8-api-tokens", v8APITokens),
        ("v9-event-actor", v9EventActor),
        ("v10-webhooks", v10Webhooks),
    ]

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        for migration in migrations {
            migrator.registerMigration(migration.identifier, migrate: migration.migrate)
        }
        return migrator
    }

    private static func v1Catalog(_ db: Database) throws {
        // `id` is `product@version`; versions are immutable, sequences are the order
        // of versions within a product (and the devices' anti-rollback counter).
        try db.execute(
            sql: """
                CREATE TABLE firmware (
                    id TEXT PRIMARY KEY NOT NULL,
                    product TEXT NOT NULL,
                    version TEXT NOT NULL,
                    sequence INTEGER NOT NULL CHECK (sequence > 0),
                    size INTEGER NOT NULL,
                    sha256 TEXT NOT NULL,
                    md5 TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    manifest_payload BLOB NOT NULL,
                    manifest_signature BLOB NOT NULL,
                    UNIQUE (product, version),
                    UNIQUE (product, sequence)
                ) STRICT
                """)
    }

    private static func v1Registry(_ db: Database) throws {
        // product and version stay NULL for a device a release named before it ever connected.
        try db.execute(
            sql: """
                CREATE TABLE devices (
                    id TEXT PRIMARY KEY NOT NULL,
                    product TEXT,
                    version TEXT,
                    accepts_updates INTEGER NOT NULL DEFAULT 1,
                    online INTEGER NOT NULL DEFAULT 0,
                    first_seen REAL,
                    last_seen REAL
                ) STRICT;
                CREATE INDEX devices_product ON devices(product);
                """)
    }

    private static func v1Jobs(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE releases (
                    id TEXT PRIMARY KEY NOT NULL,
                    firmware_id TEXT NOT NULL REFERENCES firmware(id),
                    target TEXT NOT NULL,
                    allow_downgrade INTEGER NOT NULL,
                    created_at REAL NOT NULL
                ) STRICT;
                CREATE INDEX releases_created_at ON releases(created_at);

                CREATE TABLE jobs (
                    id TEXT PRIMARY KEY NOT NULL,
                    release_id TEXT NOT NULL REFERENCES releases(id),
                    device_id TEXT NOT NULL REFERENCES devices(id),
                    firmware_id TEXT NOT NULL REFERENCES firmware(id),
                    target_version TEXT NOT NULL,
                    state TEXT NOT NULL,
                    progress INTEGER NOT NULL DEFAULT 0,
                    failure TEXT,
                    detail TEXT,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL
                ) STRICT;
                CREATE INDEX jobs_release ON jobs(release_id);
                CREATE INDEX jobs_state ON jobs(state);
                -- One active job per device, whoever writes (gateway, CLI, a bug).
                CREATE UNIQUE INDEX jobs_one_active_per_device ON jobs(device_id)
                    WHERE state NOT IN ('succeeded','failed','canceled');
                """)
    }

    private static func v1Events(_ db: Database) throws {
        // Append-only. seq is assigned as max(seq)+1 inside the write transaction, so
        // it is gap-free and in commit order; rows are never deleted.
        try db.execute(
            sql: """
                CREATE TABLE events (
                    seq INTEGER PRIMARY KEY NOT NULL,
                    time REAL NOT NULL,
                    kind TEXT NOT NULL,
                    device TEXT,
                    job TEXT,
                    release TEXT,
                    firmware TEXT,
                    from_state TEXT,
                    to_state TEXT,
                    progress INTEGER,
                    reason TEXT,
                    detail TEXT
                ) STRICT
                """)
    }

    private static func v2DeviceTransport(_ db: Database) throws {
        // NULL for devices seen before CoAP existed: they spoke MQTT.
        try db.execute(sql: "ALTER TABLE devices ADD COLUMN transport TEXT CHECK (transport IN ('mqtt', 'coap'))")
    }

    private static func v3Fleet(_ db: Database) throws {
        // Fleet rules keep their state as JSON documents of the core's Codable types:
        // the planner reads them whole and nothing queries inside them. A fleet
        // release also has its `releases` row, which its jobs refer to.
        try db.execute(
            sql: """
                CREATE TABLE fleet_releases (
                    id TEXT PRIMARY KEY NOT NULL REFERENCES releases(id),
                    body TEXT NOT NULL,
                    created_at REAL NOT NULL
                ) STRICT;
                CREATE TABLE fleet_profiles (
                    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices(id),
                    body TEXT NOT NULL
                ) STRICT;
                CREATE TABLE firmware_verification (
                    firmware_id TEXT PRIMARY KEY NOT NULL REFERENCES firmware(id),
                    body TEXT NOT NULL
                ) STRICT;
                """)
    }

    private static func v4FleetActivity(_ db: Database) throws {
        // What the engine tracks next to jobs for timeouts and re-offers, and the
        // planner's rate limiters: without them a restart would restart those clocks.
        try db.execute(
            sql: """
                CREATE TABLE job_activity (
                    job_id TEXT PRIMARY KEY NOT NULL REFERENCES jobs(id),
                    body TEXT NOT NULL
                ) STRICT;
                CREATE TABLE planner_state (
                    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
                    body TEXT NOT NULL
                ) STRICT;
                """)
    }

    private static func v5DeviceBoot(_ db: Database) throws {
        // The boot counter of the device's last announcement (NULL: it sends none).
        // A restarted gateway compares replayed announcements against it.
        try db.execute(sql: "ALTER TABLE devices ADD COLUMN boot INTEGER")
    }

    private static func v6EventCursors(_ db: Database) throws {
        // Where each reader of the event log stands (the MQTT feed: the last sequence the
        // broker acknowledged), so it resumes there after a restart. A store made before
        // this migration starts its feed after the events it already holds: they were
        // published by the old best-effort feed, or never will be useful as news.
        try db.execute(
            sql: """
                CREATE TABLE event_cursors (
                    name TEXT PRIMARY KEY NOT NULL,
                    seq INTEGER NOT NULL CHECK (seq >= 0)
                ) STRICT;
                INSERT INTO event_cursors (name, seq) SELECT 'mqtt.events', coalesce(max(seq), 0) FROM events;
                """)
    }

    private static func v7DeviceTransportUnchecked(_ db: Database) throws {
        // v2's CHECK (transport IN ('mqtt', 'coap')) would make every new transport a
        // rebuild of the devices table; the store writes only `Transport` raw values, so
        // the column keeps no list. SQLite drops a column with its own CHECK, not the
        // CHECK alone: copy the values over to a new column of the same name.
        try db.execute(
            sql: """
                ALTER TABLE devices ADD COLUMN transport_unchecked TEXT;
                UPDATE devices SET transport_unchecked = transport;
                ALTER TABLE devices DROP COLUMN transport;
                ALTER TABLE devices RENAME COLUMN transport_unchecked TO transport;
                """)
    }

    private static func v8APITokens(_ db: Database) throws {
        // Bearer tokens of the HTTP API: the SHA-256 of the secret, never the secret.
        // Revoked rows stay: a name is never reused, as events name tokens as actors.
        try db.execute(
            sql: """
                CREATE TABLE api_tokens (
                    name TEXT PRIMARY KEY NOT NULL,
                    scope TEXT NOT NULL CHECK (scope IN ('read', 'operate', 'admin')),
                    secret_sha256 TEXT NOT NULL UNIQUE CHECK (length(secret_sha256) = 64),
                    created_at REAL NOT NULL,
                    revoked_at REAL
                ) STRICT;
                """)
    }

    private static func v9EventActor(_ db: Database) throws {
        // Who asked for the change an event records (`cli:<os user>`, an API token's
        // name); NULL for what devices and the gateway do, and for events from before.
        try db.execute(sql: "ALTER TABLE events ADD COLUMN actor TEXT")
    }

    private static func v10Webhooks(_ db: Database) throws {
        // Webhooks: the endpoint, its HMAC secret (the gateway signs with it), the kinds it
        // wants (JSON array, empty: all), its durable cursor, and its run of failures.
        // The delivery log keeps the newest attempts of each webhook (trimmed on write).
        try db.execute(
            sql: """
                CREATE TABLE webhooks (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    url TEXT NOT NULL,
                    secret TEXT NOT NULL,
                    kinds TEXT NOT NULL,
                    cursor INTEGER NOT NULL CHECK (cursor >= 0),
                    created_at REAL NOT NULL,
                    failing_since REAL,
                    disabled_at REAL
                ) STRICT;
                CREATE TABLE webhook_deliveries (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
                    time REAL NOT NULL,
                    first_seq INTEGER NOT NULL,
                    last_seq INTEGER NOT NULL,
                    count INTEGER NOT NULL,
                    attempt INTEGER NOT NULL,
                    status INTEGER,
                    error TEXT,
                    milliseconds INTEGER NOT NULL
                ) STRICT;
                CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);
                """)
    }
}
