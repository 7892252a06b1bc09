-- SPDX-License-Identifier: MIT
-- 006: how many api_tokens rows each (user, team) has, expired ones
-- included until the sweep or `tokend purge` deletes them, kept in
-- api_token_versions by the triggers of 003 in the same statement as the
-- row change. Issuing a token checks the cap against the live count, which
-- is this number less the pair's expired rows: one index seek when none
-- has expired, where a count of the live rows walked all of them (issue
-- fell from 2,634/s at 5k live tokens to 611/s at 22k; bench/issue_scale.py).
--
-- ON DELETE CASCADE (a user's or a team's deletion) fires these DELETE
-- triggers. An INSERT OR REPLACE or UPDATE OR REPLACE removes the rows it
-- collides with without firing them (unless recursive triggers are on, as
-- 003 says): the count then stays one too high for each, which refuses an
-- issue early and never lets one pass the cap. tokend never REPLACEs.
-- There is no BEFORE trigger to take them off: it would run for an
-- INSERT OR IGNORE or an upsert too, whose row stays, and count too low.

ALTER TABLE api_token_versions ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0;

-- The rows already there; a pair with tokens from before 003 has no
-- version yet (it reads as 0): it gets version 1, a new one.
INSERT INTO api_token_versions (user_uuid, team_uuid, version, tokens)
SELECT user_uuid, team_uuid, 1, count(*) FROM api_tokens WHERE true
GROUP BY user_uuid, team_uuid
ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET tokens = excluded.tokens;

DROP TRIGGER api_tokens_version_insert;
DROP TRIGGER api_tokens_version_delete;
DROP TRIGGER api_tokens_version_update;

CREATE TRIGGER api_tokens_version_insert AFTER INSERT ON api_tokens
BEGIN
    INSERT INTO api_token_versions (user_uuid, team_uuid, version, tokens)
    VALUES (NEW.user_uuid, NEW.team_uuid, 1, 1)
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE
    SET version = version + 1, tokens = tokens + 1;
END;

CREATE TRIGGER api_tokens_version_delete AFTER DELETE ON api_tokens
BEGIN
    INSERT INTO api_token_versions (user_uuid, team_uuid, version, tokens)
    VALUES (OLD.user_uuid, OLD.team_uuid, 1, 0)
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE
    SET version = version + 1, tokens = tokens - 1;
END;

-- The row leaves OLD's pair and joins NEW's: net nothing when it stays.
CREATE TRIGGER api_tokens_version_update AFTER UPDATE ON api_tokens
BEGIN
    INSERT INTO api_token_versions (user_uuid, team_uuid, version, tokens)
    VALUES (OLD.user_uuid, OLD.team_uuid, 1, 0)
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE
    SET version = version + 1, tokens = tokens - 1;
    INSERT INTO api_token_versions (user_uuid, team_uuid, version, tokens)
    VALUES (NEW.user_uuid, NEW.team_uuid, 1, 1)
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE
    SET version = version + 1, tokens = tokens + 1;
END;
