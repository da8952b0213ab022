//! The schema, as an ordered list of migrations. Migration `i` (0-based) brings the database
//! from `PRAGMA user_version = i` to `i + 1`. Never edit a shipped migration: append a new one.

/// Each entry is one SQL batch, run inside its own transaction.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: meta, OPDs, extensions (HA1 per algorithm, never a password), registrations.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;

    CREATE TABLE opds (
        code   TEXT PRIMARY KEY NOT NULL,
        name   TEXT NOT NULL,
        blocks TEXT NOT NULL            -- JSON array of "first-last" strings
    ) STRICT;

    CREATE TABLE extensions (
        number     TEXT PRIMARY KEY NOT NULL,
        opd        TEXT NOT NULL,
        name       TEXT NOT NULL DEFAULT '',
        ha1_md5    TEXT NOT NULL,
        ha1_sha256 TEXT NOT NULL,
        enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX extensions_opd ON extensions (opd, number);

    CREATE TABLE registrations (
        extension      TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE,
        contact_uri    TEXT NOT NULL,
        contact_header TEXT NOT NULL,
        instance_id    TEXT,
        reg_id         INTEGER,
        source         TEXT NOT NULL,
        transport      TEXT NOT NULL,
        user_agent     TEXT NOT NULL DEFAULT '',
        call_id        TEXT NOT NULL,
        cseq           INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        PRIMARY KEY (extension, contact_uri)
    ) STRICT;
    CREATE INDEX registrations_expires_at ON registrations (expires_at);
    "#,
    // 2: per-extension forwarding and do-not-disturb; call records (one row per finished call).
    r#"
    ALTER TABLE extensions ADD COLUMN forward_always TEXT;
    ALTER TABLE extensions ADD COLUMN forward_busy TEXT;
    ALTER TABLE extensions ADD COLUMN forward_no_answer TEXT;
    ALTER TABLE extensions ADD COLUMN forward_no_answer_secs INTEGER;
    ALTER TABLE extensions ADD COLUMN dnd INTEGER NOT NULL DEFAULT 0 CHECK (dnd IN (0, 1));

    CREATE TABLE cdrs (
        id          INTEGER PRIMARY KEY,
        call_id     TEXT NOT NULL,
        caller      TEXT NOT NULL,
        dialled     TEXT NOT NULL,
        callee      TEXT,
        caller_opd  TEXT,
        callee_opd  TEXT,
        route       TEXT NOT NULL,
        trunk       INTEGER NOT NULL CHECK (trunk IN (0, 1)),
        start_ms    INTEGER NOT NULL,               -- Unix milliseconds
        answer_ms   INTEGER,
        end_ms      INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,               -- end - answer, 0 if never answered
        disposition TEXT NOT NULL,
        sip_status  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX cdrs_start_ms ON cdrs (start_ms);
    CREATE INDEX cdrs_caller_opd ON cdrs (caller_opd, start_ms);
    CREATE INDEX cdrs_callee_opd ON cdrs (callee_opd, start_ms);
    "#,
    // 3: what the RTP relay counted for each call (NULL when the media was not anchored).
    r#"
    ALTER TABLE cdrs ADD COLUMN media_packets_a2b INTEGER;
    ALTER TABLE cdrs ADD COLUMN media_packets_b2a INTEGER;
    ALTER TABLE cdrs ADD COLUMN media_lost_a2b INTEGER;
    ALTER TABLE cdrs ADD COLUMN media_lost_b2a INTEGER;
    ALTER TABLE cdrs ADD COLUMN media_jitter_us_max INTEGER;
    "#,
    // 4: the guard's ban list (addresses; expires_at NULL = until removed).
    r#"
    CREATE TABLE bans (
        address    TEXT PRIMARY KEY NOT NULL,
        reason     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER
    ) STRICT;
    CREATE INDEX bans_expires_at ON bans (expires_at);
    "#,
    // 5: answered calls in progress, so a crash leaves an `interrupted` record of each
    // (`record` is the call's CdrRecord as JSON; `seen_ms` when the switch last had it).
    r#"
    CREATE TABLE calls_open (
        call_id  TEXT NOT NULL,
        from_tag TEXT NOT NULL,
        record   TEXT NOT NULL,
        seen_ms  INTEGER NOT NULL,
        PRIMARY KEY (call_id, from_tag)
    ) STRICT;
    "#,
    // 6: the digest hashes Tambun answers its carriers' challenges with (`tambun trunk
    // passwd`); the password itself is never kept.
    r#"
    CREATE TABLE trunk_secrets (
        name       TEXT PRIMARY KEY NOT NULL,
        username   TEXT NOT NULL,
        realm      TEXT NOT NULL,
        ha1_md5    TEXT NOT NULL,
        ha1_sha256 TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    "#,
];
