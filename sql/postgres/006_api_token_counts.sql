-- SPDX-License-Identifier: MIT
-- 006 (PostgreSQL): how many api_tokens rows each (user, team) has; the
-- twin of sql/sqlite/006_api_token_counts.sql. Expired rows count until
-- the sweep or `tokend purge` deletes them. The triggers of 003 keep it in
-- the same upsert that bumps the version, so it commits with the rows and
-- concurrent changes of one pair are serialised on its row, not lost.
-- Issuing a token checks the cap against this number less the pair's
-- expired rows, after locking the membership row as before. Cascades fire
-- these row triggers; there is no REPLACE to miss a row.

ALTER TABLE api_token_versions ADD COLUMN tokens BIGINT NOT NULL DEFAULT 0;

INSERT INTO api_token_versions AS v (user_uuid, team_uuid, version, tokens)
SELECT user_uuid, team_uuid, 1, count(*) FROM api_tokens GROUP BY user_uuid, team_uuid
ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET tokens = excluded.tokens;

-- A version bump that adds d (1, -1) to the pair's count.
CREATE FUNCTION api_token_versions_bump(u TEXT, t TEXT, d BIGINT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO api_token_versions AS v (user_uuid, team_uuid, version, tokens)
    VALUES (u, t, 1, greatest(d, 0))
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE
    SET version = v.version + 1, tokens = v.tokens + d;
$$;

CREATE OR REPLACE FUNCTION api_tokens_version_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM api_token_versions_bump(NEW.user_uuid, NEW.team_uuid, 1);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION api_tokens_version_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM api_token_versions_bump(OLD.user_uuid, OLD.team_uuid, -1);
    RETURN NULL;
END;
$$;

-- The row leaves OLD's pair and joins NEW's: net nothing when it stays.
CREATE OR REPLACE FUNCTION api_tokens_version_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM api_token_versions_bump(OLD.user_uuid, OLD.team_uuid, -1);
    PERFORM api_token_versions_bump(NEW.user_uuid, NEW.team_uuid, 1);
    RETURN NULL;
END;
$$;
