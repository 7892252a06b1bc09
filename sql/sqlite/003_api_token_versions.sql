-- SPDX-License-Identifier: MIT
-- 003: a version for each user's token listing in each team. Every change
-- to api_tokens bumps the version of the (user, team) it touches, whoever
-- makes it (this server, `tokend purge`, another process, a hand-written
-- UPDATE), so the server may keep a listing it has built for as long as
-- the version stays the same. Rows are never deleted: a version is never
-- handed out twice for the same pair.

CREATE TABLE api_token_versions (
    user_uuid   TEXT NOT NULL,
    team_uuid   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (user_uuid, team_uuid)
) WITHOUT ROWID;

-- An INSERT OR REPLACE (or an UPDATE OR REPLACE) removes the rows it
-- collides with without firing their DELETE trigger (unless recursive
-- triggers are on): their pairs are bumped before.
CREATE TRIGGER api_tokens_version_replace BEFORE INSERT ON api_tokens
BEGIN
    INSERT INTO api_token_versions (user_uuid, team_uuid, version)
    SELECT user_uuid, team_uuid, 1 FROM api_tokens
    WHERE jti = NEW.jti OR digest = NEW.digest
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER api_tokens_version_update_replace BEFORE UPDATE ON api_tokens
BEGIN
    INSERT INTO api_token_versions (user_uuid, team_uuid, version)
    SELECT user_uuid, team_uuid, 1 FROM api_tokens
    WHERE (jti = NEW.jti OR digest = NEW.digest) AND jti <> OLD.jti
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER api_tokens_version_insert AFTER INSERT ON api_tokens
BEGIN
    INSERT INTO api_token_versions (user_uuid, team_uuid, version)
    VALUES (NEW.user_uuid, NEW.team_uuid, 1)
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER api_tokens_version_delete AFTER DELETE ON api_tokens
BEGIN
    INSERT INTO api_token_versions (user_uuid, team_uuid, version)
    VALUES (OLD.user_uuid, OLD.team_uuid, 1)
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER api_tokens_version_update AFTER UPDATE ON api_tokens
BEGIN
    INSERT INTO api_token_versions (user_uuid, team_uuid, version)
    VALUES (OLD.user_uuid, OLD.team_uuid, 1)
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET version = version + 1;
    INSERT INTO api_token_versions (user_uuid, team_uuid, version)
    VALUES (NEW.user_uuid, NEW.team_uuid, 1)
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET version = version + 1;
END;
