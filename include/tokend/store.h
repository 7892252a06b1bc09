/* SPDX-License-Identifier: MIT */
/*
 * This header is the one narrow interface between tokend and its database.
 * The handlers and the CLI reach persistent state only through it and never
 * learn which backend runs: src/store/store.c holds the rules once, over the
 * row-level ops of src/store/backend.h that SQLite (src/store/sqlite/) and
 * PostgreSQL (src/store/postgres/) implement. The store never sees HTTP.
 * Every function may be called from any thread: each backend keeps one
 * connection per calling thread.
 */
#ifndef TOKEND_STORE_H
#define TOKEND_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "tokend/util.h"

#define STORE_NAME_MAX 150 /* usernames and team names, bytes */
#define STORE_KID_MAX 16   /* key ids, bytes (tokend's are JWTSIGN_KID_LEN hex) */
/* An encoded password hash, bytes: the store keeps what crypto makes, so
 * handlers/auth_jwt.c asserts PASSWORD_HASH_MAX fits. */
#define STORE_HASH_MAX 256

struct store; /* opaque */

struct store_user {
	char uuid[UUID_STR_LEN];
	char username[STORE_NAME_MAX + 1];
	char password[STORE_HASH_MAX + 1]; /* the encoded hash; wiped after use */
	bool is_active;
	int64_t created_at;
	int64_t last_login; /* 0 = never */
};

struct store_team {
	char uuid[UUID_STR_LEN];
	char name[STORE_NAME_MAX + 1];
	int64_t created_at;
	long members;
};

/*
 * Opens the database target names. Does not migrate. A postgresql:// or
 * postgres:// URL, or a libpq conninfo ("host=... dbname=..."), opens
 * PostgreSQL (the password from the URL, PGPASSFILE or PGPASSWORD: it is
 * never logged); anything else is the path of an SQLite file, created if
 * needed. On success *out owns the store (store_close). Errors: TOKEND_EDB
 * with a message in errbuf.
 */
int store_open(const char *target, long busy_timeout_ms, struct store **out, char *errbuf,
	       size_t errlen);

/* "sqlite" or "postgres": for the start-up log line only. */
const char *store_backend_name(const struct store *st);

/* Closes every connection and frees the store; clears *st; accepts NULL. */
void store_close(struct store **st);

/*
 * Readiness: is the store answering? Cheap enough for a probe every second.
 * Checks that the database path still names the file the store opened (a
 * removed or replaced file keeps answering on the old descriptor, to no
 * one), reads on this thread's connection and begins (then rolls back) a
 * write transaction, each waiting at most timeout_ms for another process's
 * lock (the write check is skipped while this process writes: the store
 * answers). Returns 0, TOKEND_EBUSY (locked longer than timeout_ms) or
 * TOKEND_EDB (missing, replaced or failing). Counts failures as store errors.
 */
int store_ping(struct store *st, long timeout_ms);

/*
 * A read snapshot on this thread's connection: the lookups up to
 * store_read_end() may share one read transaction instead of one each
 * (SQLite: one read lock, taken at the first lookup; PostgreSQL: each
 * lookup is one statement, and this is a no-op). A write ends the thread's
 * snapshot first, and lookups after it see the write. store_read_end()
 * after that is harmless.
 */
int store_read_begin(struct store *st);
void store_read_end(struct store *st);

/*
 * Applies the migrations of sql/ newer than the database's user_version, in
 * order, each in its own transaction. *version (if not NULL) gets the
 * version now in force and *fresh whether the database had no schema before.
 * Errors: TOKEND_EDB (also when the database is newer than this binary).
 */
int store_migrate(struct store *st, int *version, bool *fresh, char *errbuf, size_t errlen);

/* Users. Names are compared exactly (case-sensitive, like Django). */
int store_user_add(struct store *st, const char *username, const char *hash,
		   char uuid_out[UUID_STR_LEN]); /* TOKEND_EEXISTS */
int store_user_get_by_name(struct store *st, const char *username, struct store_user *out);
/* By uuid; out->password is left empty (authentication needs no hash). */
int store_user_get_by_uuid(struct store *st, const char *uuid, struct store_user *out);
/* Replaces the hash only (a login's rehash): sessions stay. */
int store_user_set_password(struct store *st, const char *uuid, const char *hash);
/*
 * An operator's password change, in one transaction: sets the hash and ends
 * every session of the user (store_user_sessions_end). TOKEND_ENOTFOUND.
 */
int store_user_change_password(struct store *st, const char *uuid, const char *hash, int64_t now);
/*
 * Enables a user; disabling is store_user_disable(st, username, now, false),
 * so no user is ever disabled with live sessions. TOKEND_ENOTFOUND.
 */
int store_user_set_active(struct store *st, const char *username, bool active);
/*
 * Disables a user in one transaction: is_active = 0, every session ended
 * (they stay ended after an enable), and with delete_api_tokens every API
 * token of the user in every team deleted. API tokens kept are refused while
 * the user is disabled and work again after an enable. TOKEND_ENOTFOUND.
 */
int store_user_disable(struct store *st, const char *username, int64_t now, bool delete_api_tokens);
/* Deletes the user; memberships, sessions and tokens go with it. */
int store_user_delete(struct store *st, const char *username);
/* Calls fn for each user ordered by username; stops early if fn returns non-zero. */
int store_user_list(struct store *st, int (*fn)(const struct store_user *u, void *arg), void *arg);

/*
 * Bulk import (tokend user import). One user of a batch: hash is an encoded
 * hash the caller has checked (password_parse), teams are names or uuids of
 * existing teams, each joined as "member".
 */
#define STORE_IMPORT_TEAMS_MAX 64 /* teams of one imported user */

struct store_import {
	const char *username;
	const char *hash;
	bool is_active;
	const char *const *teams;
	size_t n_teams;
};

struct store_import_counts {
	long added;   /* new users */
	long updated; /* existing users changed (update only) */
	long skipped; /* existing users already as given (update only) */
};

/*
 * Imports users[0..n) in one write transaction: all of them or none. A
 * username that exists is TOKEND_EEXISTS unless update; with update its hash,
 * is_active and memberships are brought to what users[] says, compared with
 * the row as read just before the transaction: a changed hash or a disable
 * ends every session of the user (as store_user_change_password and
 * store_user_disable do), an unchanged user is counted as skipped, and an
 * existing membership keeps its role. On success counts (if not NULL) gets
 * this batch's numbers added. On failure nothing of the batch is written and
 * *failed (if not NULL) is the index of the user at fault (n when the commit
 * itself failed). Errors: TOKEND_EEXISTS, TOKEND_ENOTFOUND (a team of
 * users[*failed] does not exist), TOKEND_EINVAL (a name, hash or team list
 * over its limit), TOKEND_ENOMEM, TOKEND_EDB, TOKEND_EBUSY.
 */
int store_user_import(struct store *st, const struct store_import *users, size_t n, bool update,
		      int64_t now, struct store_import_counts *counts, size_t *failed);

/* Teams; team_ref is a name or a uuid. */
int store_team_add(struct store *st, const char *name, char uuid_out[UUID_STR_LEN]);
int store_team_get(struct store *st, const char *team_ref, struct store_team *out);
int store_team_list(struct store *st, int (*fn)(const struct store_team *t, void *arg), void *arg);
/* role is "member" or "admin"; re-adding updates the role. */
int store_team_add_member(struct store *st, const char *team_ref, const char *username,
			  const char *role);
/*
 * Removes the membership and deletes the user's API tokens in that team, in
 * one transaction (a later add-member does not bring them back).
 * TOKEND_ENOTFOUND when the team, the user or the membership is missing.
 */
int store_team_remove_member(struct store *st, const char *team_ref, const char *username);
/* *member = team_uuid exists and user_uuid belongs to it (one indexed lookup). */
int store_team_is_member(struct store *st, const char *team_uuid, const char *user_uuid,
			 bool *member);

/* A refresh token as recorded: never the token string, only its claims. */
struct store_refresh {
	char jti[UUID_STR_LEN];
	char family[UUID_STR_LEN]; /* jti of the login's first refresh token */
	char user_uuid[UUID_STR_LEN];
	char kid[STORE_KID_MAX + 1];   /* the key that signed it */
	char access_jti[UUID_STR_LEN]; /* the access token minted with it */
	int64_t issued_at;
	int64_t expires_at;
	int64_t session_created_at; /* the login that started the session */
};

/*
 * A successful login, in one transaction: sets the user's last_login to
 * r->issued_at if the user is still active, starts session r->family
 * (created_at r->issued_at) and records the new refresh token r as
 * outstanding. Errors: TOKEND_ENOTFOUND when the user was disabled or
 * deleted meanwhile (nothing is recorded: refuse the login), TOKEND_EDB.
 */
int store_login_record(struct store *st, const struct store_refresh *r);

/*
 * Sessions. A session is one login: its refresh family, named by the family
 * id, which the login's access and refresh tokens (and every pair rotated
 * from them) carry as the "sid" claim. Ending a session revokes its refresh
 * rows too; an ended session never comes back.
 */
enum store_session {
	STORE_SESSION_LIVE,     /* recorded for that user, not ended, user active */
	STORE_SESSION_ENDED,    /* not a session of that user, or ended */
	STORE_SESSION_INACTIVE, /* the user is disabled */
	STORE_SESSION_NO_USER,  /* no such user */
};

/*
 * What session sid of user_uuid is now (one indexed lookup of each table).
 * Once store_sessions_watch runs, a session this thread found live is not
 * looked up again until it ends (the ends in memory tell, as for
 * store_session_ended).
 */
int store_session_state(struct store *st, const char *sid, const char *user_uuid,
			enum store_session *state);

/*
 * How long store_purge keeps a session end (sql/sqlite/ and sql/postgres/ 005_session_ends.sql):
 * a server that starts loads the ends of its horizon from them, so a
 * horizon longer than this must not use the cache (cli_serve.c).
 */
#define STORE_SESSION_ENDS_KEEP 86400L

/*
 * Keeps this process's view of ended sessions in memory from now on, for
 * store_session_ended: loads every session end of the last horizon seconds
 * (horizon: the access lifetime + leeway + a margin; an access token
 * outlives its session's end by at most that), then follows new ones. Call
 * once, before other threads use the store (the server does; the CLI
 * never). A database that several hosts share (PostgreSQL) keeps nothing
 * in memory: no counter could tell this process what another host ended,
 * so every check stays a lookup. 0, TOKEND_ENOMEM, TOKEND_EDB.
 */
int store_sessions_watch(struct store *st, long horizon);

/*
 * *ended = session sid has ended (verify's check of an access token).
 * Without store_sessions_watch: one indexed lookup of sessions, and no row
 * or an ended one is ended (fail closed). With it, no lookup: sid is looked
 * for in the ends kept in memory, which are reloaded first when a commit
 * that may end a session was counted since the last load (by any process
 * on this database, through the "<database>-ends" counter file), and at
 * least every second anyway (writers outside tokend do not count: the
 * triggers record their ends, seen within that second). A sid that is not
 * a lower-case uuid is looked up. Does not check the user: disabling or
 * deleting a user ends the sessions (triggers of each backend's 005). TOKEND_EDB
 * (*ended stays true).
 */
int store_session_ended(struct store *st, const char *sid, bool *ended);

/*
 * Ends session sid of user_uuid (a logout), in one transaction: revoked_at
 * = now and its refresh rows revoked. *ended = it was live before.
 */
int store_session_end(struct store *st, const char *sid, const char *user_uuid, int64_t now,
		      bool *ended);

/*
 * Ends every live session of user_uuid and revokes their refresh rows, in
 * one transaction; *ended (if not NULL) counts the sessions ended.
 */
int store_user_sessions_end(struct store *st, const char *user_uuid, int64_t now, long *ended);

enum store_rotation {
	STORE_ROTATED,  /* old is blacklisted, next recorded */
	STORE_REPLAYED, /* old was rotated within the grace window: *replay is its successor */
	STORE_REUSED,   /* old was already used: theft, the session is now ended */
	STORE_ENDED, /* old's session had ended already (logout, passwd, reuse): nothing changed */
	STORE_UNKNOWN,  /* no such token for that user (never issued, purged, user deleted) */
	STORE_INACTIVE, /* the user is disabled: nothing changed */
	STORE_EXPIRED,  /* the session is past its absolute lifetime: it is now ended */
};

/*
 * Rotates the refresh token old_jti of user_uuid to next, in one transaction, so of two concurrent rotations (by any processes) exactly one
 * wins and the other sees a used token. next->family is filled from the old row. A
 * used token presented again revokes its family, unless it was rotated at
 * most grace seconds ago and its successor is still unused: then *replay
 * gets that successor so the caller can answer as before. With
 * session_lifetime > 0, a session at least that old since its login is
 * ended instead (STORE_EXPIRED), and next->expires_at is cut to the
 * session's end. next->session_created_at and replay->session_created_at
 * are filled from the session.
 */
int store_refresh_rotate(struct store *st, const char *old_jti, const char *user_uuid, int64_t now,
			 long grace, long session_lifetime, struct store_refresh *next,
			 struct store_refresh *replay, enum store_rotation *outcome);

/*
 * Called by store_refresh_rotate_then() with next in its final form
 * (family, expires_at) when the outcome is STORE_ROTATED, just before the
 * transaction commits: a non-zero return rolls the rotation back and is
 * returned, so a caller that cannot build its answer spends no token.
 */
typedef int (*store_rotation_commit_fn)(const struct store_refresh *next, void *arg);

/* store_refresh_rotate() with a commit hook (may be NULL). */
int store_refresh_rotate_then(struct store *st, const char *old_jti, const char *user_uuid,
			      int64_t now, long grace, long session_lifetime,
			      struct store_refresh *next, struct store_refresh *replay,
			      enum store_rotation *outcome, store_rotation_commit_fn fn, void *arg);

enum store_logout {
	STORE_LOGOUT_ENDED,  /* the token's session was live: it is now ended */
	STORE_LOGOUT_REUSED, /* a used token outside the grace window: theft, the session is ended */
	STORE_LOGOUT_REFUSED, /* unknown, another's, user disabled, session ended or over */
};

/*
 * A logout with the refresh token jti of user_uuid, in one write
 * transaction: ends its session (revoking every refresh row of the family).
 * An unused token, or a used one rotated at most grace seconds ago whose
 * successor is unused (it stands for the successor, as in
 * store_refresh_rotate), gives STORE_LOGOUT_ENDED; any other used token is a
 * reuse: the session is ended all the same and the outcome is
 * STORE_LOGOUT_REUSED. A session at least session_lifetime old (when > 0)
 * is ended and refused. Otherwise nothing changes.
 */
int store_refresh_logout(struct store *st, const char *jti, const char *user_uuid, int64_t now,
			 long grace, long session_lifetime, enum store_logout *outcome);

/*
 * *live = the refresh token jti is recorded for user_uuid, unused and not
 * revoked, its session is live and the user active (one indexed lookup of
 * each table).
 */
int store_refresh_live(struct store *st, const char *jti, const char *user_uuid, bool *live);

/*
 * Deletes, in one transaction, at most limit refresh-token rows and at most
 * limit API-token rows that expired at or before `before` (outstanding and
 * blacklisted alike: an expired token fails its exp check anyway).
 * *deleted gets how many rows in all. A session goes with its last refresh
 * row (a trigger of 004_sessions.sql; not counted). Also deletes at
 * most limit session ends older than before - STORE_SESSION_ENDS_KEEP
 * (not counted).
 */
int store_purge(struct store *st, int64_t before, long limit, long *deleted);

/*
 * *in_use = a token signed by kid may still be valid at now: an unused,
 * unrevoked, unexpired refresh token, or an access token minted with a
 * refresh token less than access_lifetime seconds ago.
 */
int store_key_in_use(struct store *st, const char *kid, int64_t now, long access_lifetime,
		     bool *in_use);

/* An API token as stored: its digest and the claims to mint it again. The
 * digest is the store's business: it computes it from the token string. */
struct store_api_token {
	char jti[UUID_STR_LEN];   /* token_issuer_uuid */
	unsigned char digest[32]; /* SHA-256 of the token string */
	char user_uuid[UUID_STR_LEN];
	char team_uuid[UUID_STR_LEN];
	char kid[STORE_KID_MAX + 1];
	char name[STORE_NAME_MAX + 1]; /* "" = none */
	int64_t issued_at;
	int64_t updated_at;
	int64_t expires_at;
};

/*
 * Records t, the claims of token (t->digest is ignored: the store keeps the
 * digest of token, never token), unless its user already has cap live
 * (unexpired at t->issued_at) tokens in its team: TOKEND_ECONFLICT then.
 * Count and insert share one transaction, so concurrent issues, by any
 * number of processes, never exceed the cap.
 */
int store_api_token_add(struct store *st, const struct store_api_token *t, const char *token,
			long cap);

/*
 * *member = team_uuid exists and user_uuid belongs to it, and *version is
 * the version of user's tokens in that team: bumped by every change to
 * them, by any process (0 = never had one). One indexed lookup, or none
 * where one host writes the database: this thread's last answer for the
 * pair holds while no process has committed a write since, and for at most
 * a second (writers outside tokend bump no counter; src/store/listing_memo.c).
 */
int store_api_token_version(struct store *st, const char *team_uuid, const char *user_uuid,
			    bool *member, int64_t *version);

/* Calls fn for each unexpired token of user in team, newest first. */
int store_api_token_list(struct store *st, const char *user_uuid, const char *team_uuid,
			 int64_t now, int (*fn)(const struct store_api_token *t, void *arg),
			 void *arg);

/* Finds the jti of the API token string token; TOKEND_ENOTFOUND. */
int store_api_token_find(struct store *st, const char *token, char jti[UUID_STR_LEN]);

/*
 * Deletes, in one transaction, the tokens among jtis[0..n) that belong to
 * user in team and are unexpired at now (what the list shows); *deleted
 * counts them (others' jtis are silently skipped; expired tokens are left
 * to store_purge).
 */
int store_api_token_delete(struct store *st, const char *user_uuid, const char *team_uuid,
			   int64_t now, const char *const *jtis, size_t n, long *deleted);

/*
 * *live = token jti is recorded for user_uuid and team_uuid, the user is
 * active and still a member of the team (one indexed lookup).
 */
int store_api_token_live(struct store *st, const char *jti, const char *user_uuid,
			 const char *team_uuid, bool *live);

#endif
