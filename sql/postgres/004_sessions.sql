-- SPDX-License-Identifier: MIT
-- 004 (PostgreSQL): sessions; the twin of sql/004_sessions.sql. A session
-- is one login: its refresh family, named by the jti of the login's first
-- refresh token, which every access and refresh token minted in it carries
-- as its "sid" claim. Ending a session (logout, `user disable`, `user
-- passwd`, a refresh-token reuse) sets revoked_at and revokes its refresh
-- rows; its access tokens then fail verification and Bearer authentication
-- at once, on every instance, because all of them look the session up.
--
-- SQLite's 004 also makes a session for each family already recorded (an
-- upgrade of an older database). PostgreSQL stores are new with 005:
-- refresh_tokens is always empty here, so that INSERT ... SELECT is left out.

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,           -- the family id = the sid claim
    user_uuid   TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,            -- the login
    revoked_at  BIGINT                      -- NULL: live
);

CREATE INDEX sessions_by_user ON sessions (user_uuid);

-- A session is deleted with its last refresh row (the sweep, `tokend
-- purge`, any DELETE): by then its access tokens have expired too, unless
-- access tokens are configured to outlive refresh tokens, and then they
-- fail closed (no session). One indexed lookup per deleted row.
--
-- A trigger's WHEN may not hold a subquery in PostgreSQL: the test is in
-- the body. SQLite runs one writer at a time; here two transactions (two
-- instances sweeping) may each delete one of a family's last two rows, and
-- each would still see the other's row and leave the session behind. So
-- the session row is locked first: the second waits for the first to
-- commit, and then (READ COMMITTED: a new snapshot per statement) sees
-- both rows gone.
CREATE FUNCTION refresh_tokens_session_gone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM sessions WHERE id = OLD.family FOR UPDATE;
    IF NOT EXISTS (SELECT 1 FROM refresh_tokens WHERE family = OLD.family) THEN
        DELETE FROM sessions WHERE id = OLD.family;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER refresh_tokens_session_gone AFTER DELETE ON refresh_tokens
FOR EACH ROW EXECUTE FUNCTION refresh_tokens_session_gone();
