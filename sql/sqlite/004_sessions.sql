-- SPDX-License-Identifier: MIT
-- 004: sessions. A session is one login: its refresh family, named by the
-- jti of the login's first refresh token, which every access and refresh
-- token minted in it carries as its "sid" claim. Ending a session (logout,
-- `user disable`, `user passwd`, a refresh-token reuse) sets revoked_at and
-- revokes its refresh rows; its access tokens then fail verification and
-- Bearer authentication at once, because both look the session up.

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,  -- the family id = the sid claim
    user_uuid   TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,           -- the login
    revoked_at  INTEGER                     -- NULL: live
);

CREATE INDEX sessions_by_user ON sessions (user_uuid);

-- One session per family already recorded; a family whose every row is
-- revoked (a reuse) is an ended session.
INSERT INTO sessions (id, user_uuid, created_at, revoked_at)
SELECT family, min(user_uuid), min(issued_at),
       CASE WHEN min(revoked) = 1 THEN coalesce(max(used_at), max(issued_at)) END
FROM refresh_tokens GROUP BY family;

-- A session is deleted with its last refresh row (the sweep, `tokend
-- purge`, any DELETE): by then its access tokens have expired too, unless
-- access tokens are configured to outlive refresh tokens, and then they
-- fail closed (no session). One indexed lookup per deleted row.
CREATE TRIGGER refresh_tokens_session_gone AFTER DELETE ON refresh_tokens
WHEN NOT EXISTS (SELECT 1 FROM refresh_tokens WHERE family = OLD.family)
BEGIN
    DELETE FROM sessions WHERE id = OLD.family;
END;
