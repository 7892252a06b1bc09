-- SPDX-License-Identifier: MIT
-- 001: users, teams, memberships, and the refresh tokens of each login.
-- Times are Unix seconds (UTC). UUIDs are lowercase canonical text.

CREATE TABLE users (
    uuid        TEXT PRIMARY KEY NOT NULL,
    username    TEXT NOT NULL UNIQUE,
    password    TEXT NOT NULL,              -- pbkdf2_sha256$<iter>$<salt>$<hash>
    is_active   INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at  INTEGER NOT NULL,
    last_login  INTEGER                     -- NULL: never
);

CREATE TABLE teams (
    uuid        TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE team_members (
    team_uuid   TEXT NOT NULL REFERENCES teams (uuid) ON DELETE CASCADE,
    user_uuid   TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    role        TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    PRIMARY KEY (team_uuid, user_uuid)
) WITHOUT ROWID;

CREATE INDEX team_members_by_user ON team_members (user_uuid);

-- Every refresh token issued, by jti (never the token string). family is the
-- jti of the login that started the chain. used_at is set when the token is
-- rotated (it is then blacklisted) and replaced_by names its successor;
-- revoked marks a whole family after a reuse. kid and access_jti let a
-- rotation be replayed byte for byte inside the grace window, and tell
-- `tokend key retire` whether a key still has live tokens.
CREATE TABLE refresh_tokens (
    jti          TEXT PRIMARY KEY NOT NULL,
    family       TEXT NOT NULL,
    user_uuid    TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    kid          TEXT NOT NULL,
    access_jti   TEXT NOT NULL,
    issued_at    INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    replaced_by  TEXT,
    revoked      INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
);

-- Every refresh writes this table, so it carries only the indexes a hot path
-- needs: the jti (primary key) and the family (revocation on reuse). The
-- sweep finds expired rows in rowid order (rows arrive in time order) and
-- deleting a user, which is rare, scans for its rows.
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
