-- SPDX-License-Identifier: MIT
-- 002: per-team API tokens. Never the token string: a SHA-256 digest of it
-- (for lookups by token) and the claims needed to mint it again for the
-- list (jti, user, team, iat, exp, and the kid of the key that signed it).
-- A dump of this table without the key directory yields no usable token.

CREATE TABLE api_tokens (
    jti         TEXT PRIMARY KEY NOT NULL,  -- token_issuer_uuid
    digest      BLOB NOT NULL UNIQUE,       -- SHA-256 of the token as issued
    user_uuid   TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    team_uuid   TEXT NOT NULL REFERENCES teams (uuid) ON DELETE CASCADE,
    kid         TEXT NOT NULL,
    name        TEXT,
    issued_at   INTEGER NOT NULL,           -- iat, also created_at
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL            -- exp
);

CREATE INDEX api_tokens_by_owner ON api_tokens (user_uuid, team_uuid, expires_at);
CREATE INDEX api_tokens_by_team ON api_tokens (team_uuid);
