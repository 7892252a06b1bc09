-- SPDX-License-Identifier: MIT
-- 005: session ends. Every session that ends (logout, reuse, expiry,
-- `user passwd`, `user disable`, user delete, purge) gets one row here, by
-- triggers, so that whatever writes the database — tokend, its CLI or
-- another tool — leaves the record. A server keeps the rows of the last few
-- minutes in memory (src/store/session_cache.c) and verify checks an access
-- token's sid against them instead of looking the session up; it reads the
-- rows after `seq` it has seen, so seq must never be reused (AUTOINCREMENT:
-- a purge of the newest rows cannot hand their numbers out again).
-- A PostgreSQL twin of these triggers is needed in sql/postgres/.

CREATE TABLE session_ends (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    sid       TEXT NOT NULL,     -- sessions.id
    ended_at  INTEGER NOT NULL   -- unix seconds
);

-- store_purge deletes by age; the server's first load reads by age too.
CREATE INDEX session_ends_by_time ON session_ends (ended_at);

-- The sessions ended before this migration.
INSERT INTO session_ends (sid, ended_at)
SELECT id, revoked_at FROM sessions WHERE revoked_at IS NOT NULL ORDER BY revoked_at;

CREATE TRIGGER sessions_end_recorded AFTER UPDATE OF revoked_at ON sessions
WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
BEGIN
    INSERT INTO session_ends (sid, ended_at) VALUES (NEW.id, NEW.revoked_at);
END;

-- A live session deleted (with its user, by ON DELETE CASCADE, or with its
-- last refresh row by the trigger of 004) ends now. An ended one has its row.
CREATE TRIGGER sessions_gone_recorded AFTER DELETE ON sessions
WHEN OLD.revoked_at IS NULL
BEGIN
    INSERT INTO session_ends (sid, ended_at)
    VALUES (OLD.id, CAST(strftime('%s', 'now') AS INTEGER));
END;

-- A user disabled by any writer loses its sessions (tokend's own disable
-- ends them first, in the same transaction; then this finds none live).
CREATE TRIGGER users_disabled_sessions_end AFTER UPDATE OF is_active ON users
WHEN OLD.is_active = 1 AND NEW.is_active = 0
BEGIN
    UPDATE sessions SET revoked_at = CAST(strftime('%s', 'now') AS INTEGER)
    WHERE user_uuid = NEW.uuid AND revoked_at IS NULL;
END;
