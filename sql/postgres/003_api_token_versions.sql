-- SPDX-License-Identifier: MIT
-- 003 (PostgreSQL): a version for each user's token listing in each team;
-- the twin of sql/003_api_token_versions.sql. Every change to api_tokens
-- bumps the version of the (user, team) it touches, whoever makes it (any
-- instance, `tokend purge`, a hand-written UPDATE), so an instance may keep
-- a listing it has built for as long as the version stays the same. Rows
-- are never deleted: a version is never handed out twice for the same pair.
--
-- The bump is an INSERT ... ON CONFLICT DO UPDATE, which is safe against
-- concurrent bumps of the same pair under READ COMMITTED: the second waits
-- for the first and adds one to its result. (Under REPEATABLE READ or
-- SERIALIZABLE it raises a serialization failure instead; retry.)

CREATE TABLE api_token_versions (
    user_uuid   TEXT NOT NULL,
    team_uuid   TEXT NOT NULL,
    version     BIGINT NOT NULL,
    PRIMARY KEY (user_uuid, team_uuid)
);

-- One pair at a time: a single INSERT ... SELECT ... ON CONFLICT DO UPDATE
-- that meets the same pair twice fails in PostgreSQL ("cannot affect row a
-- second time") where SQLite bumps twice.
CREATE FUNCTION api_token_versions_bump(u TEXT, t TEXT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO api_token_versions AS v (user_uuid, team_uuid, version)
    VALUES (u, t, 1)
    ON CONFLICT (user_uuid, team_uuid) DO UPDATE SET version = v.version + 1;
$$;

-- SQLite's INSERT OR REPLACE removes the rows it collides with without
-- firing their DELETE trigger; PostgreSQL has no REPLACE, and a plain
-- colliding INSERT or UPDATE fails and takes these bumps with it. They stay
-- for the twin of an upsert, INSERT ... ON CONFLICT DO NOTHING / DO UPDATE,
-- where PostgreSQL, like SQLite, runs BEFORE INSERT first and then (DO
-- UPDATE) the UPDATE triggers: the same bumps on both backends.
CREATE FUNCTION api_tokens_version_replace() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN SELECT user_uuid, team_uuid FROM api_tokens
             WHERE jti = NEW.jti OR digest = NEW.digest LOOP
        PERFORM api_token_versions_bump(r.user_uuid, r.team_uuid);
    END LOOP;
    RETURN NEW;
END;
$$;

CREATE TRIGGER api_tokens_version_replace BEFORE INSERT ON api_tokens
FOR EACH ROW EXECUTE FUNCTION api_tokens_version_replace();

CREATE FUNCTION api_tokens_version_update_replace() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN SELECT user_uuid, team_uuid FROM api_tokens
             WHERE (jti = NEW.jti OR digest = NEW.digest) AND jti <> OLD.jti LOOP
        PERFORM api_token_versions_bump(r.user_uuid, r.team_uuid);
    END LOOP;
    RETURN NEW;
END;
$$;

CREATE TRIGGER api_tokens_version_update_replace BEFORE UPDATE ON api_tokens
FOR EACH ROW EXECUTE FUNCTION api_tokens_version_update_replace();

CREATE FUNCTION api_tokens_version_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM api_token_versions_bump(NEW.user_uuid, NEW.team_uuid);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_version_insert AFTER INSERT ON api_tokens
FOR EACH ROW EXECUTE FUNCTION api_tokens_version_insert();

CREATE FUNCTION api_tokens_version_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM api_token_versions_bump(OLD.user_uuid, OLD.team_uuid);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_version_delete AFTER DELETE ON api_tokens
FOR EACH ROW EXECUTE FUNCTION api_tokens_version_delete();

CREATE FUNCTION api_tokens_version_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM api_token_versions_bump(OLD.user_uuid, OLD.team_uuid);
    PERFORM api_token_versions_bump(NEW.user_uuid, NEW.team_uuid);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_version_update AFTER UPDATE ON api_tokens
FOR EACH ROW EXECUTE FUNCTION api_tokens_version_update();
