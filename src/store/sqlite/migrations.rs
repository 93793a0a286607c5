//! The schema's migrations, oldest first; `schema.rs` applies them, and
//! holds what two of them run beside their SQL.
//!
//! Each entry moves the database from version `index` to `index + 1`. Never
//! edit a shipped entry: append a new one.

use rusqlite::Connection;

use super::schema::{fill_in_targets, incremental_auto_vacuum};

/// One step of the schema: its statements, then what SQL alone cannot do.
pub(super) struct Migration {
    pub(super) sql: &'static str,
    pub(super) then: Option<fn(&Connection) -> rusqlite::Result<()>>,
    /// Drops and recreates tables that others reference, so it runs with
    /// foreign keys off (a DROP would otherwise cascade) and checks them
    /// before it commits: SQLite's documented way to change a table.
    pub(super) rebuilds: bool,
    /// Runs before the migration's transaction, outside any (VACUUM cannot
    /// run inside one). It must be safe to run again: a crash before the
    /// version is bumped repeats it at the next start.
    pub(super) before: Option<fn(&Connection) -> rusqlite::Result<()>>,
}

/// Every migration, oldest first.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 1: operations, deliveries (with the rendered request), attempts.
    Migration {
        sql: r#"
    CREATE TABLE operations (
        id           INTEGER PRIMARY KEY,
        processing   TEXT    NOT NULL,
        received_at  INTEGER NOT NULL,          -- ms since the Unix epoch
        remote_addr  TEXT    NOT NULL,
        method       TEXT    NOT NULL,
        raw_query    BLOB    NOT NULL,
        raw_body     BLOB    NOT NULL,
        content_type TEXT,
        charset      TEXT    NOT NULL,
        fields       TEXT    NOT NULL,          -- JSON object of strings
        warnings     TEXT    NOT NULL,          -- JSON array of strings
        status       TEXT    NOT NULL,
        reason       TEXT,
        dedupe_key   TEXT,
        updated_at   INTEGER NOT NULL
    );
    CREATE INDEX operations_by_processing ON operations (processing, id);
    CREATE INDEX operations_by_status ON operations (status, id);
    CREATE INDEX operations_by_received ON operations (received_at);
    CREATE INDEX operations_by_dedupe ON operations (processing, dedupe_key, received_at)
        WHERE dedupe_key IS NOT NULL;

    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY,
        operation_id    INTEGER NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
        action          TEXT    NOT NULL,
        position        INTEGER NOT NULL,
        status          TEXT    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        method          TEXT    NOT NULL,
        url             TEXT    NOT NULL,
        headers         TEXT    NOT NULL,       -- JSON array of [name, value]
        body            BLOB,
        redacted        TEXT    NOT NULL,
        expect_body     TEXT,
        timeout_ms      INTEGER NOT NULL,
        max_attempts    INTEGER NOT NULL,
        first_delay_ms  INTEGER NOT NULL,
        max_delay_ms    INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id)
        WHERE status IN ('pending', 'retrying');
    CREATE INDEX deliveries_by_operation ON deliveries (operation_id, position);

    CREATE TABLE attempts (
        id            INTEGER PRIMARY KEY,
        delivery_id   INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        started_at    INTEGER NOT NULL,
        duration_ms   INTEGER NOT NULL,
        request       TEXT    NOT NULL,         -- redacted request line
        http_status   INTEGER,
        response_body TEXT,                     -- first 2 KiB
        error         TEXT
    );
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 2: notifications waiting to be sent, the first-warning-per-day marks,
    //    and small named values (last notification time, health probe).
    Migration {
        sql: r#"
    CREATE TABLE notifications (
        id               INTEGER PRIMARY KEY,
        created_at       INTEGER NOT NULL,
        kind             TEXT    NOT NULL,      -- failure | warning
        processing       TEXT    NOT NULL,
        operation_id     INTEGER NOT NULL,      -- may outlive its operation
        text             TEXT    NOT NULL,
        email_sent_at    INTEGER,
        telegram_sent_at INTEGER
    );
    CREATE INDEX notifications_by_created ON notifications (created_at);

    CREATE TABLE warning_days (
        processing TEXT    NOT NULL,
        kind       TEXT    NOT NULL,
        day        INTEGER NOT NULL,            -- days since the Unix epoch
        PRIMARY KEY (processing, kind, day)
    ) WITHOUT ROWID;

    CREATE TABLE meta (
        key   TEXT    PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 3: each delivery's receiver (`scheme://host:port/`), indexed over the
    //    due ones, so a claim can pass over a busy receiver's backlog
    //    without reading it.
    Migration {
        sql: r#"
    ALTER TABLE deliveries ADD COLUMN target TEXT NOT NULL DEFAULT '';
    CREATE INDEX deliveries_due_by_target ON deliveries (target, next_attempt_at, id)
        WHERE status IN ('pending', 'retrying');
    "#,
        then: Some(fill_in_targets),
        rebuilds: false,
        before: None,
    },
    // 4: ids are never reused. With a plain rowid key SQLite numbers a new
    //    row one past the largest left, so pruning the newest rows handed
    //    their ids (and `X-Hookrelay-Delivery` values) out again.
    //    AUTOINCREMENT remembers the largest id ever used; a table cannot
    //    gain it in place, so each is copied into a new one.
    Migration {
        sql: r#"
    CREATE TABLE new_operations (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        processing   TEXT    NOT NULL,
        received_at  INTEGER NOT NULL,          -- ms since the Unix epoch
        remote_addr  TEXT    NOT NULL,
        method       TEXT    NOT NULL,
        raw_query    BLOB    NOT NULL,
        raw_body     BLOB    NOT NULL,
        content_type TEXT,
        charset      TEXT    NOT NULL,
        fields       TEXT    NOT NULL,          -- JSON object of strings
        warnings     TEXT    NOT NULL,          -- JSON array of strings
        status       TEXT    NOT NULL,
        reason       TEXT,
        dedupe_key   TEXT,
        updated_at   INTEGER NOT NULL
    );
    INSERT INTO new_operations (id, processing, received_at, remote_addr, method, raw_query, raw_body,
            content_type, charset, fields, warnings, status, reason, dedupe_key, updated_at)
        SELECT id, processing, received_at, remote_addr, method, raw_query, raw_body,
            content_type, charset, fields, warnings, status, reason, dedupe_key, updated_at
        FROM operations;
    DROP TABLE operations;
    ALTER TABLE new_operations RENAME TO operations;
    CREATE INDEX operations_by_processing ON operations (processing, id);
    CREATE INDEX operations_by_status ON operations (status, id);
    CREATE INDEX operations_by_received ON operations (received_at);
    CREATE INDEX operations_by_dedupe ON operations (processing, dedupe_key, received_at)
        WHERE dedupe_key IS NOT NULL;

    CREATE TABLE new_deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        operation_id    INTEGER NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
        action          TEXT    NOT NULL,
        position        INTEGER NOT NULL,
        status          TEXT    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        method          TEXT    NOT NULL,
        url             TEXT    NOT NULL,
        headers         TEXT    NOT NULL,       -- JSON array of [name, value]
        body            BLOB,
        redacted        TEXT    NOT NULL,
        expect_body     TEXT,
        timeout_ms      INTEGER NOT NULL,
        max_attempts    INTEGER NOT NULL,
        first_delay_ms  INTEGER NOT NULL,
        max_delay_ms    INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        target          TEXT    NOT NULL DEFAULT ''
    );
    INSERT INTO new_deliveries (id, operation_id, action, position, status, attempts, next_attempt_at,
            last_error, method, url, headers, body, redacted, expect_body, timeout_ms, max_attempts,
            first_delay_ms, max_delay_ms, updated_at, target)
        SELECT id, operation_id, action, position, status, attempts, next_attempt_at,
            last_error, method, url, headers, body, redacted, expect_body, timeout_ms, max_attempts,
            first_delay_ms, max_delay_ms, updated_at, target
        FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE new_deliveries RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id)
        WHERE status IN ('pending', 'retrying');
    CREATE INDEX deliveries_by_operation ON deliveries (operation_id, position);
    CREATE INDEX deliveries_due_by_target ON deliveries (target, next_attempt_at, id)
        WHERE status IN ('pending', 'retrying');

    CREATE TABLE new_attempts (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id   INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        started_at    INTEGER NOT NULL,
        duration_ms   INTEGER NOT NULL,
        request       TEXT    NOT NULL,         -- redacted request line
        http_status   INTEGER,
        response_body TEXT,                     -- first 2 KiB
        error         TEXT
    );
    INSERT INTO new_attempts (id, delivery_id, started_at, duration_ms, request, http_status,
            response_body, error)
        SELECT id, delivery_id, started_at, duration_ms, request, http_status, response_body, error
        FROM attempts;
    DROP TABLE attempts;
    ALTER TABLE new_attempts RENAME TO attempts;
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);

    -- An operation already pruned may still be named by a notification:
    -- start past it too.
    UPDATE sqlite_sequence
        SET seq = MAX(seq, (SELECT COALESCE(MAX(operation_id), 0) FROM notifications))
        WHERE name = 'operations';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'operations', MAX(operation_id) FROM notifications
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'operations')
        HAVING MAX(operation_id) IS NOT NULL;
    "#,
        then: None,
        rebuilds: true,
        before: None,
    },
    // 5: pruning gives disk back. With incremental auto-vacuum, the pages
    //    pruning frees can be returned to the file system a few at a time
    //    (the writer does so after each prune batch); without it the file
    //    only ever grows. A database made before turns it on once, which
    //    takes a full VACUUM; a new one has it from the start.
    Migration {
        sql: "",
        then: None,
        rebuilds: false,
        before: Some(incremental_auto_vacuum),
    },
    // 6: the web console. `status_hours` counts operations by processing,
    //    hour received and status, kept by triggers on every path that
    //    writes operations, so the overview's 24-hour and 7-day counts read
    //    a few hundred rows instead of scanning a week of operations.
    //    `field_search` finds operations by a field's value (store/sqlite/search.rs);
    //    the writer adds operations' rows a few at a time, and rebuilds it
    //    when pruned operations' rows outnumber the others.
    Migration {
        sql: r#"
    CREATE TABLE status_hours (
        processing TEXT    NOT NULL,
        hour       INTEGER NOT NULL,            -- received_at in hours since the Unix epoch
        status     TEXT    NOT NULL,
        n          INTEGER NOT NULL,
        PRIMARY KEY (processing, hour, status)
    ) WITHOUT ROWID;
    INSERT INTO status_hours (processing, hour, status, n)
        SELECT processing, received_at / 3600000, status, count(*) FROM operations GROUP BY 1, 2, 3;
    CREATE TRIGGER status_hours_insert AFTER INSERT ON operations BEGIN
        INSERT INTO status_hours (processing, hour, status, n)
            VALUES (NEW.processing, NEW.received_at / 3600000, NEW.status, 1)
            ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER status_hours_update AFTER UPDATE OF status ON operations
        WHEN OLD.status != NEW.status BEGIN
        UPDATE status_hours SET n = n - 1
            WHERE processing = OLD.processing AND hour = OLD.received_at / 3600000 AND status = OLD.status;
        INSERT INTO status_hours (processing, hour, status, n)
            VALUES (NEW.processing, NEW.received_at / 3600000, NEW.status, 1)
            ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER status_hours_delete AFTER DELETE ON operations BEGIN
        UPDATE status_hours SET n = n - 1
            WHERE processing = OLD.processing AND hour = OLD.received_at / 3600000 AND status = OLD.status;
    END;

    CREATE VIRTUAL TABLE field_search USING fts5 (text, content = '');
    -- Pruning leaves its operations' rows in the index (they match nothing:
    -- searches join the index to operations) and only counts them; an FTS5
    -- delete per row made pruning twice as slow and stalled
    -- acknowledgements for over a second. When most of the index is such
    -- rows, the writer rebuilds it (store/sqlite/search.rs).
    CREATE TRIGGER field_search_stale AFTER DELETE ON operations
        WHEN OLD.id <= (SELECT value FROM meta WHERE key = 'search_indexed_through') BEGIN
        INSERT INTO meta (key, value) VALUES ('search_stale_rows', 1)
            ON CONFLICT (key) DO UPDATE SET value = value + 1;
    END;
    "#,
        // Once indexed the operations before it, into the table that
        // migration 8 drops: not worth doing on the way to 8.
        then: None,
        rebuilds: false,
        before: None,
    },
    // 7: silence alerts. A row says the processing's silence after
    //    `last_operation` was announced; it goes when events are back. Kept
    //    here, so a restart neither repeats the alert nor forgets it.
    Migration {
        sql: r#"
    CREATE TABLE silences (
        processing     TEXT    PRIMARY KEY,
        last_operation INTEGER NOT NULL,
        last_event_at  INTEGER NOT NULL,
        alerted_at     INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 8: the search index moves to a file of its own (store/sqlite/search.rs),
    //    written by its own thread: FTS5's merges inside the writer's
    //    commits held webhooks up for up to 200 ms. The new file is filled
    //    from scratch in the background.
    Migration {
        sql: r#"
    DROP TRIGGER field_search_stale;
    DROP TABLE field_search;
    DELETE FROM meta WHERE key IN ('search_indexed_through', 'search_rows', 'search_stale_rows');
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 9: each receiver's circuit breaker and last answer (store/receivers.rs),
    //    so an open breaker stays open across a restart. `version` orders
    //    the states the workers report, which can reach the writer out of
    //    order.
    Migration {
        sql: r#"
    CREATE TABLE receivers (
        target          TEXT    PRIMARY KEY,    -- scheme://host:port/
        version         INTEGER NOT NULL,
        failures        INTEGER NOT NULL,       -- retryable failures in a row
        failing_since   INTEGER,
        open_since      INTEGER,                -- set while the breaker is open
        probe_wait_ms   INTEGER,
        next_probe_at   INTEGER,
        last_success_at INTEGER,
        last_error      TEXT,
        last_error_at   INTEGER
    ) WITHOUT ROWID;
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 10: the columns PostgreSQL's instances lease claimed deliveries with
    //     (store/postgres/claims.rs), so that both engines run the same statements; a
    //     single SQLite daemon never sets them.
    Migration {
        sql: r#"
    ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;
    ALTER TABLE deliveries ADD COLUMN lease_until INTEGER;
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 11: claimed deliveries (`in_flight`) by a partial index of their own,
    //     so that what is waiting counts them (read.rs, `unsent`): the
    //     scheduler claims ahead, and a claimed delivery can wait in its
    //     queue for a worker or a receiver's turn. PostgreSQL's
    //     `deliveries_leased` serves the same.
    Migration {
        sql: r#"
    CREATE INDEX deliveries_in_flight ON deliveries (target) WHERE status = 'in_flight';
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 12: each replay of an operation, as an event of its own (store/replay.rs):
    //     the operation keeps its original reason.
    Migration {
        sql: r#"
    CREATE TABLE replays (
        id           INTEGER PRIMARY KEY,
        operation_id INTEGER NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
        at           INTEGER NOT NULL,
        source       TEXT    NOT NULL,          -- "command line (root)", "console (admin)"
        deliveries   INTEGER NOT NULL           -- how many it queued
    );
    CREATE INDEX replays_by_operation ON replays (operation_id, id);
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 13: what an action counts as taken (`rules`, JSON; NULL: any 2xx and
    //     `expect_body`), how each answer was judged (`verdict`, JSON; NULL
    //     for attempts before), and when a delivery stops being worth
    //     sending (`expires_at`, from `max_age`; NULL: never), found by a
    //     partial index of the waiting ones that can expire.
    Migration {
        sql: r#"
    ALTER TABLE deliveries ADD COLUMN rules TEXT;
    ALTER TABLE deliveries ADD COLUMN expires_at INTEGER;
    ALTER TABLE attempts ADD COLUMN verdict TEXT;
    CREATE INDEX deliveries_expiring ON deliveries (expires_at)
        WHERE expires_at IS NOT NULL AND status IN ('pending', 'retrying');
    "#,
        then: None,
        rebuilds: false,
        before: None,
    }, // 14: the console's totals. `event` is the operation's `event` field
    //     (what Klientiks's addresses send), for the event filter.
    //     `hour_counts` replaces `status_hours`: by processing, hour
    //     received and event, the operations by status (action `''`) and,
    //     per action, the deliveries that finished (delivered, failed,
    //     expired, cancelled), counting only an operation's newest delivery
    //     for each action: after a replay, its new delivery's outcome
    //     replaces the old one's. So "did yesterday's paid visits reach
    //     Plarin?" reads a few hundred rows instead of a day of operations.
    //     An operation's rows go in a BEFORE DELETE trigger, while its
    //     deliveries are still there to count (the cascade removes them
    //     after; deliveries are never deleted otherwise).
    Migration {
        sql: r#"
    ALTER TABLE operations ADD COLUMN event TEXT;
    UPDATE operations SET event = json_extract(fields, '$.event')
        WHERE json_type(fields, '$.event') = 'text';
    DROP TRIGGER status_hours_insert;
    DROP TRIGGER status_hours_update;
    DROP TRIGGER status_hours_delete;
    DROP TABLE status_hours;
    CREATE TABLE hour_counts (
        processing TEXT    NOT NULL,
        hour       INTEGER NOT NULL,            -- received_at in hours since the Unix epoch
        event      TEXT    NOT NULL,            -- '' when the operation has none
        action     TEXT    NOT NULL,            -- '': the operations themselves
        status     TEXT    NOT NULL,
        n          INTEGER NOT NULL,
        PRIMARY KEY (processing, hour, event, action, status)
    ) WITHOUT ROWID;
    INSERT INTO hour_counts (processing, hour, event, action, status, n)
        SELECT processing, received_at / 3600000, COALESCE(event, ''), '', status, count(*)
        FROM operations GROUP BY 1, 2, 3, 5;
    INSERT INTO hour_counts (processing, hour, event, action, status, n)
        SELECT o.processing, o.received_at / 3600000, COALESCE(o.event, ''), d.action, d.status, count(*)
        FROM deliveries d JOIN operations o ON o.id = d.operation_id
        WHERE d.status IN ('delivered', 'failed', 'expired', 'cancelled')
          AND d.id = (SELECT MAX(l.id) FROM deliveries l WHERE l.operation_id = d.operation_id AND l.action = d.action)
        GROUP BY 1, 2, 3, 4, 5;
    CREATE TRIGGER hour_counts_operation_insert AFTER INSERT ON operations BEGIN
        INSERT INTO hour_counts (processing, hour, event, action, status, n)
            VALUES (NEW.processing, NEW.received_at / 3600000, COALESCE(NEW.event, ''), '', NEW.status, 1)
            ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER hour_counts_operation_update AFTER UPDATE OF status ON operations
        WHEN OLD.status != NEW.status BEGIN
        UPDATE hour_counts SET n = n - 1
            WHERE processing = OLD.processing AND hour = OLD.received_at / 3600000
              AND event = COALESCE(OLD.event, '') AND action = '' AND status = OLD.status;
        INSERT INTO hour_counts (processing, hour, event, action, status, n)
            VALUES (NEW.processing, NEW.received_at / 3600000, COALESCE(NEW.event, ''), '', NEW.status, 1)
            ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER hour_counts_operation_delete BEFORE DELETE ON operations BEGIN
        UPDATE hour_counts SET n = n - 1
            WHERE processing = OLD.processing AND hour = OLD.received_at / 3600000
              AND event = COALESCE(OLD.event, '') AND action = '' AND status = OLD.status;
        UPDATE hour_counts SET n = n - (
                SELECT count(*) FROM deliveries d
                WHERE d.operation_id = OLD.id AND d.action = hour_counts.action AND d.status = hour_counts.status
                  AND NOT EXISTS (SELECT 1 FROM deliveries l
                                  WHERE l.operation_id = OLD.id AND l.action = d.action AND l.id > d.id))
            WHERE processing = OLD.processing AND hour = OLD.received_at / 3600000
              AND event = COALESCE(OLD.event, '') AND action != '';
    END;
    -- A replay's delivery takes the place of the action's previous one. A
    -- replay's come after the operation's first (position 0 is always an
    -- operation's first delivery), so an acknowledgement's inserts skip
    -- the lookup.
    CREATE TRIGGER hour_counts_delivery_supersede AFTER INSERT ON deliveries
        WHEN NEW.position > 0 AND (SELECT p.status FROM deliveries p
              WHERE p.operation_id = NEW.operation_id AND p.action = NEW.action AND p.id < NEW.id
              ORDER BY p.id DESC LIMIT 1) IN ('delivered', 'failed', 'expired', 'cancelled') BEGIN
        UPDATE hour_counts SET n = n - 1
            WHERE (processing, hour, event) = (SELECT processing, received_at / 3600000, COALESCE(event, '')
                                               FROM operations WHERE id = NEW.operation_id)
              AND action = NEW.action
              AND status = (SELECT p.status FROM deliveries p
                            WHERE p.operation_id = NEW.operation_id AND p.action = NEW.action AND p.id < NEW.id
                            ORDER BY p.id DESC LIMIT 1);
    END;
    CREATE TRIGGER hour_counts_delivery_insert AFTER INSERT ON deliveries
        WHEN NEW.status IN ('delivered', 'failed', 'expired', 'cancelled') BEGIN
        INSERT INTO hour_counts (processing, hour, event, action, status, n)
            SELECT processing, received_at / 3600000, COALESCE(event, ''), NEW.action, NEW.status, 1
            FROM operations WHERE id = NEW.operation_id
            ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    -- Two triggers, so a delivery's only finishing transition (pending or
    -- in flight to delivered, say) costs one counter upsert, not a
    -- decrement that finds nothing first.
    CREATE TRIGGER hour_counts_delivery_leaves AFTER UPDATE OF status ON deliveries
        WHEN OLD.status != NEW.status AND OLD.status IN ('delivered', 'failed', 'expired', 'cancelled') BEGIN
        UPDATE hour_counts SET n = n - 1
            WHERE (processing, hour, event) = (SELECT processing, received_at / 3600000, COALESCE(event, '')
                                               FROM operations WHERE id = OLD.operation_id)
              AND action = OLD.action AND status = OLD.status;
    END;
    CREATE TRIGGER hour_counts_delivery_finishes AFTER UPDATE OF status ON deliveries
        WHEN OLD.status != NEW.status AND NEW.status IN ('delivered', 'failed', 'expired', 'cancelled') BEGIN
        INSERT INTO hour_counts (processing, hour, event, action, status, n)
            SELECT processing, received_at / 3600000, COALESCE(event, ''), NEW.action, NEW.status, 1
            FROM operations WHERE id = NEW.operation_id
            ON CONFLICT DO UPDATE SET n = n + 1;
    END;
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 15: OAuth2 tokens of the integrations that sign in (amoCRM), kept
    //     here and not in the config because they rotate: each refresh
    //     hands out a new pair and the old refresh token dies
    //     (store/tokens.rs). `refreshing_until`: a lease, so that one
    //     instance at a time refreshes.
    Migration {
        sql: r#"
    CREATE TABLE oauth_tokens (
        integration      TEXT    PRIMARY KEY,
        access_token     TEXT    NOT NULL,
        refresh_token    TEXT    NOT NULL,
        expires_at       INTEGER NOT NULL,
        obtained_at      INTEGER NOT NULL,
        refreshing_until INTEGER
    );
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 16: what actions' answers kept (a Bitrix24 lead's id), by the
    //     action's `processing/action` and the event's `remember` key, for
    //     a later event's `recall` (store/remembered.rs).
    Migration {
        sql: r#"
    CREATE TABLE remembered (
        name  TEXT    NOT NULL,
        key   TEXT    NOT NULL,
        value TEXT    NOT NULL,
        at    INTEGER NOT NULL,
        PRIMARY KEY (name, key)
    ) WITHOUT ROWID;
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
    // 17: Yandex Metrica's batches (store/batches.rs). A metrica row is a
    //     delivery with its `batch_key` (`processing/action`), never due on
    //     its own; a batch takes its rows by setting their `batch_id` in
    //     the transaction that makes it, so no row is in two batches.
    Migration {
        sql: r#"
    ALTER TABLE deliveries ADD COLUMN batch_key TEXT;
    ALTER TABLE deliveries ADD COLUMN batch_id INTEGER;
    CREATE INDEX deliveries_unbatched ON deliveries (batch_key, id)
        WHERE batch_key IS NOT NULL AND batch_id IS NULL AND status = 'pending';
    CREATE INDEX deliveries_by_batch ON deliveries (batch_id) WHERE batch_id IS NOT NULL;
    CREATE TABLE batches (
        id             INTEGER PRIMARY KEY,
        batch_key      TEXT    NOT NULL,
        rows           INTEGER NOT NULL,
        made_at        INTEGER NOT NULL,
        state          TEXT    NOT NULL,
        attempts       INTEGER NOT NULL DEFAULT 0,
        next_at        INTEGER NOT NULL,
        sent_at        INTEGER,
        upload_id      TEXT,
        upload_state   TEXT,
        linked         INTEGER,
        user_not_found INTEGER,
        goal_not_found INTEGER,
        last_error     TEXT,
        lease_until    INTEGER,
        updated_at     INTEGER NOT NULL
    );
    CREATE INDEX batches_due ON batches (next_at) WHERE state IN ('ready', 'sending', 'uploaded');
    CREATE INDEX batches_by_key ON batches (batch_key, id);
    "#,
        then: None,
        rebuilds: false,
        before: None,
    },
];
