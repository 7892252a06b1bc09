-- SPDX-License-Identifier: MIT
-- 001 (PostgreSQL): users, teams, memberships, and the refresh tokens of
-- each login. The twin of sql/001_init.sql; sql/postgres/NNN is the same
-- migration as sql/NNN, so a version number means one schema on both
-- backends. Times are Unix seconds (UTC). UUIDs are lowercase canonical text.
--
-- Types, chosen so that the C backend binds and reads every parameter as
-- text, and most statements are the same text on both backends:
--   epoch seconds  BIGINT
--   flags          INTEGER 0/1 with a CHECK, as in SQLite (not BOOLEAN):
--                  `is_active = 1`, `SET revoked = 1`, a bound '0'/'1' and
--                  a column read back as "0"/"1" all work unchanged. (EXISTS
--                  and comparisons still yield boolean "t"/"f"; cast them
--                  with ::int where a statement selects one.)
--   digests        BYTEA (bind in binary format, or as '\x<hex>' text)
--   uuids, names   TEXT; users.username and teams.name are COLLATE "C", so
--                  ORDER BY sorts them bytewise like SQLite's BINARY
--                  collation whatever the database's locale.
-- There is no rowid: where SQLite's statements use it, PostgreSQL's use
-- ctid (`DELETE ... WHERE ctid IN (SELECT ctid ... LIMIT n)`, the purges)
-- or api_tokens.seq (002, the listing's insertion order).
--
-- Triggers are FOR EACH ROW PL/pgSQL functions where SQLite has trigger
-- bodies. PostgreSQL runs AFTER row triggers at the end of the statement,
-- SQLite after each row; every trigger here leaves the same rows either way
-- (tests/pg/test_pg_schema.py runs the same statements on both).
--
-- Migrations: each file runs in one transaction and has no BEGIN/COMMIT of
-- its own. The runner (store_pg.c) serialises instances that start at the
-- same time with pg_advisory_xact_lock and records each version applied in
-- its schema_version table, which no file here creates.

CREATE TABLE users (
    uuid        TEXT PRIMARY KEY,
    username    TEXT COLLATE "C" NOT NULL UNIQUE,
    password    TEXT NOT NULL,              -- pbkdf2_sha256$<iter>$<salt>$<hash>
    is_active   INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at  BIGINT NOT NULL,
    last_login  BIGINT                      -- NULL: never
);

CREATE TABLE teams (
    uuid        TEXT PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE team_members (
    team_uuid   TEXT NOT NULL REFERENCES teams (uuid) ON DELETE CASCADE,
    user_uuid   TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    role        TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    PRIMARY KEY (team_uuid, user_uuid)
);

CREATE INDEX team_members_by_user ON team_members (user_uuid);

-- Every refresh token issued, by jti (never the token string). family is the
-- jti of the login that started the chain. used_at is set when the token is
-- rotated (it is then blacklisted) and replaced_by names its successor;
-- revoked marks a whole family after a reuse. kid and access_jti let a
-- rotation be replayed byte for byte inside the grace window, and tell
-- `tokend key retire` whether a key still has live tokens.
CREATE TABLE refresh_tokens (
    jti          TEXT PRIMARY KEY,
    family       TEXT NOT NULL,
    user_uuid    TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    kid          TEXT NOT NULL,
    access_jti   TEXT NOT NULL,
    issued_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    replaced_by  TEXT,
    revoked      INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
);

-- Every refresh writes this table, so it carries only the indexes a hot path
-- needs: the jti (primary key) and the family (revocation on reuse). The
-- sweep scans for expired rows (they sit mostly at the start of the heap)
-- and deleting a user, which is rare, scans for its rows (the ON DELETE
-- CASCADE has no index on user_uuid to use, as in SQLite).
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
