/* SPDX-License-Identifier: MIT */
/*
 * This module implements the token half of store.h on SQLite: refresh
 * tokens (login with its session, rotation with reuse detection, logout,
 * liveness, purge) and API
 * tokens (cap-checked insert, list, digest lookup, delete, liveness).
 * Read-then-write work runs in BEGIN IMMEDIATE transactions, so concurrent
 * rotations and issues serialise (../shared/PITFALLS.md: a deferred BEGIN
 * fails at once with SQLITE_BUSY_SNAPSHOT).
 */
#include <string.h>

#include "store/sqlite_internal.h"
#include "tokend/err.h"

static int refresh_insert(struct conn *c, const struct store_refresh *r)
{
	sqlite3_stmt *s = store_db_stmt(c, S_REFRESH_ADD);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, r->jti);
	store_db_bind_text(s, 2, r->family);
	store_db_bind_text(s, 3, r->user_uuid);
	store_db_bind_text(s, 4, r->kid);
	store_db_bind_text(s, 5, r->access_jti);
	sqlite3_bind_int64(s, 6, r->issued_at);
	sqlite3_bind_int64(s, 7, r->expires_at);
	return store_db_exec(c, s, "refresh add");
}

int store_login_record(struct store *st, const struct store_refresh *r)
{
	struct conn *c = NULL;
	sqlite3_stmt *s;
	int rc;

	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	s = store_db_stmt(c, S_LOGIN_TOUCH);
	if (s == NULL) {
		rc = TOKEND_EDB;
		goto out;
	}
	store_db_bind_text(s, 1, r->user_uuid);
	sqlite3_bind_int64(s, 2, r->issued_at);
	/* Refused unless the user is still active: the hash took its time. */
	rc = store_db_exec_changes(c, s, "login touch");
	if (rc != 0)
		goto out;
	s = store_db_stmt(c, S_SESSION_ADD);
	if (s == NULL) {
		rc = TOKEND_EDB;
		goto out;
	}
	store_db_bind_text(s, 1, r->family);
	store_db_bind_text(s, 2, r->user_uuid);
	sqlite3_bind_int64(s, 3, r->issued_at);
	rc = store_db_exec(c, s, "session add");
	if (rc == 0)
		rc = refresh_insert(c, r);
out:
	return store_db_end(c, rc);
}

/* Reads the unused, unrevoked refresh row jti into out. */
static int refresh_row(struct conn *c, const char *jti, struct store_refresh *out)
{
	sqlite3_stmt *s = store_db_stmt(c, S_REFRESH_ROW);
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, jti);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		store_db_copy_col(s, 0, out->jti, sizeof(out->jti));
		store_db_copy_col(s, 1, out->family, sizeof(out->family));
		store_db_copy_col(s, 2, out->user_uuid, sizeof(out->user_uuid));
		store_db_copy_col(s, 3, out->kid, sizeof(out->kid));
		store_db_copy_col(s, 4, out->access_jti, sizeof(out->access_jti));
		out->issued_at = sqlite3_column_int64(s, 5);
		out->expires_at = sqlite3_column_int64(s, 6);
		out->session_created_at = sqlite3_column_int64(s, 7);
	}
	store_db_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TOKEND_ENOTFOUND : store_db_error(c, "refresh row");
}

/* What S_REFRESH_GET tells about one refresh row, for rotation and logout. */
struct refresh_state {
	bool found;
	char family[UUID_STR_LEN];
	char owner[UUID_STR_LEN];
	char replaced_by[UUID_STR_LEN];
	bool used, revoked, active;
	int64_t used_at;
	int64_t session_created_at;
};

static int refresh_get(struct conn *c, const char *jti, struct refresh_state *rs)
{
	sqlite3_stmt *s = store_db_stmt(c, S_REFRESH_GET);
	int step;

	memset(rs, 0, sizeof(*rs));
	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, jti);
	step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		rs->found = true;
		store_db_copy_col(s, 0, rs->family, sizeof(rs->family));
		store_db_copy_col(s, 1, rs->owner, sizeof(rs->owner));
		rs->used = sqlite3_column_type(s, 2) != SQLITE_NULL;
		rs->used_at = sqlite3_column_int64(s, 2);
		rs->revoked = sqlite3_column_int(s, 3) != 0;
		store_db_copy_col(s, 4, rs->replaced_by, sizeof(rs->replaced_by));
		rs->active = sqlite3_column_int(s, 5) != 0;
		rs->session_created_at = sqlite3_column_int64(s, 6);
	}
	store_db_done(s);
	if (step == SQLITE_ROW || step == SQLITE_DONE)
		return 0;
	return store_db_error(c, "refresh get");
}

/*
 * A used token within the grace window whose successor is still unused:
 * *replay (if not NULL) gets the successor's row.
 */
static bool in_grace(struct conn *c, const struct refresh_state *rs, int64_t now, long grace,
		     struct store_refresh *replay)
{
	struct store_refresh tmp;

	return grace > 0 && now - rs->used_at <= grace && rs->replaced_by[0] != '\0' &&
	       refresh_row(c, rs->replaced_by, replay ? replay : &tmp) == 0;
}

int store_refresh_rotate_then(struct store *st, const char *old_jti, const char *user_uuid,
			      int64_t now, long grace, long session_lifetime,
			      struct store_refresh *next, struct store_refresh *replay,
			      enum store_rotation *outcome, store_rotation_commit_fn fn,
			      void *arg)
{
	struct conn *c = NULL;
	struct refresh_state rs;
	sqlite3_stmt *s;
	int rc;

	*outcome = STORE_UNKNOWN;
	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	rc = refresh_get(c, old_jti, &rs);
	if (rc != 0 || !rs.found)
		goto out; /* STORE_UNKNOWN */
	if (strcmp(rs.owner, user_uuid) != 0)
		goto out; /* STORE_UNKNOWN: a token must not name another's row */
	memcpy(next->family, rs.family, UUID_STR_LEN);
	next->session_created_at = rs.session_created_at;
	if (!rs.active) {
		*outcome = STORE_INACTIVE;
		goto out;
	}
	if (rs.revoked) {
		*outcome = STORE_ENDED; /* revoked with its session: not a new theft */
		goto out;
	}
	/* However often it was refreshed, a session ends at its absolute limit. */
	if (session_lifetime > 0) {
		int64_t end = next->session_created_at + session_lifetime;
		if (now >= end) {
			rc = store_db_sessions_end(c, next->family, rs.owner, now, NULL);
			if (rc == 0)
				*outcome = STORE_EXPIRED;
			goto out;
		}
		if (next->expires_at > end)
			next->expires_at = end;
	}
	if (rs.used) {
		if (in_grace(c, &rs, now, grace, replay)) {
			*outcome = STORE_REPLAYED;
			goto out;
		}
		/* Theft: whoever holds the session's live tokens loses them too. */
		rc = store_db_sessions_end(c, next->family, rs.owner, now, NULL);
		if (rc == 0)
			*outcome = STORE_REUSED;
		goto out;
	}
	s = store_db_stmt(c, S_REFRESH_USE);
	if (s == NULL) {
		rc = TOKEND_EDB;
		goto out;
	}
	store_db_bind_text(s, 1, old_jti);
	sqlite3_bind_int64(s, 2, now);
	store_db_bind_text(s, 3, next->jti);
	rc = store_db_exec_changes(c, s, "refresh use");
	if (rc == 0)
		rc = refresh_insert(c, next);
	if (rc == 0 && fn != NULL)
		rc = fn(next, arg);
	if (rc == 0)
		*outcome = STORE_ROTATED;
out:
	return store_db_end(c, rc);
}

int store_refresh_rotate(struct store *st, const char *old_jti, const char *user_uuid,
			 int64_t now, long grace, long session_lifetime,
			 struct store_refresh *next, struct store_refresh *replay,
			 enum store_rotation *outcome)
{
	return store_refresh_rotate_then(st, old_jti, user_uuid, now, grace, session_lifetime,
					 next, replay, outcome, NULL, NULL);
}

int store_refresh_logout(struct store *st, const char *jti, const char *user_uuid, int64_t now,
			 long grace, long session_lifetime, enum store_logout *outcome)
{
	struct conn *c = NULL;
	struct refresh_state rs;
	bool standin;
	int rc;

	*outcome = STORE_LOGOUT_REFUSED;
	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	rc = refresh_get(c, jti, &rs);
	/* Unknown, another's row, a disabled user, an ended session: refused. */
	if (rc != 0 || !rs.found || strcmp(rs.owner, user_uuid) != 0 || !rs.active ||
	    rs.revoked)
		goto out;
	if (session_lifetime > 0 && now >= rs.session_created_at + session_lifetime) {
		/* over already: end the row as a rotation would, and refuse */
		rc = store_db_sessions_end(c, rs.family, rs.owner, now, NULL);
		goto out;
	}
	/* A used token stands for its successor inside the window; else theft.
	 * (Asked before the end, which revokes the successor.) */
	standin = !rs.used || in_grace(c, &rs, now, grace, NULL);
	rc = store_db_sessions_end(c, rs.family, rs.owner, now, NULL);
	if (rc == 0)
		*outcome = standin ? STORE_LOGOUT_ENDED : STORE_LOGOUT_REUSED;
out:
	return store_db_end(c, rc);
}

int store_refresh_live(struct store *st, const char *jti, const char *user_uuid, bool *live)
{
	const char *params[] = {jti, user_uuid};

	return store_db_exists(st, S_REFRESH_LIVE, params, 2, live);
}

int store_purge(struct store *st, int64_t before, long limit, long *deleted)
{
	static const enum stmt_id purges[] = {S_REFRESH_PURGE, S_API_PURGE};
	struct conn *c = NULL;
	int rc;

	*deleted = 0;
	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < sizeof(purges) / sizeof(purges[0]); i++) {
		sqlite3_stmt *s = store_db_stmt(c, purges[i]);
		if (s == NULL) {
			rc = TOKEND_EDB;
			break;
		}
		sqlite3_bind_int64(s, 1, before);
		sqlite3_bind_int64(s, 2, limit);
		rc = store_db_exec(c, s, "purge");
		if (rc == 0)
			*deleted += (long)sqlite3_changes(c->db);
		/* A live session goes with its last refresh row: it ends. */
		if (rc == 0 && purges[i] == S_REFRESH_PURGE && sqlite3_changes(c->db) > 0)
			c->ends_session = true;
	}
	/* Session ends a day older than before: no access token outlives
	 * them (access.lifetime is at most a day). Not counted in *deleted. */
	if (rc == 0) {
		sqlite3_stmt *s = store_db_stmt(c, S_ENDS_PURGE);
		if (s == NULL) {
			rc = TOKEND_EDB;
		} else {
			sqlite3_bind_int64(s, 1, before - STORE_SESSION_ENDS_KEEP);
			sqlite3_bind_int64(s, 2, limit);
			rc = store_db_exec(c, s, "purge session ends");
		}
	}
	rc = store_db_end(c, rc);
	if (rc != 0)
		*deleted = 0;
	return rc;
}

int store_key_in_use(struct store *st, const char *kid, int64_t now, long access_lifetime,
		     bool *in_use)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_KEY_IN_USE) : NULL;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, kid);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int64(s, 3, access_lifetime);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*in_use = sqlite3_column_int(s, 0) != 0;
	store_db_done(s);
	return rc == SQLITE_ROW ? 0 : store_db_error(c, "key in use");
}

int store_api_token_add(struct store *st, const struct store_api_token *t, long cap)
{
	struct conn *c = NULL;
	sqlite3_stmt *s;
	long live = 0;
	int rc;

	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	s = store_db_stmt(c, S_API_COUNT);
	if (s == NULL) {
		rc = TOKEND_EDB;
		goto out;
	}
	store_db_bind_text(s, 1, t->user_uuid);
	store_db_bind_text(s, 2, t->team_uuid);
	sqlite3_bind_int64(s, 3, t->issued_at);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		live = (long)sqlite3_column_int64(s, 0);
	store_db_done(s);
	if (rc != SQLITE_ROW) {
		rc = store_db_error(c, "api count");
		goto out;
	}
	if (live >= cap) {
		rc = TOKEND_ECONFLICT;
		goto out;
	}
	s = store_db_stmt(c, S_API_ADD);
	if (s == NULL) {
		rc = TOKEND_EDB;
		goto out;
	}
	store_db_bind_text(s, 1, t->jti);
	sqlite3_bind_blob(s, 2, t->digest, sizeof(t->digest), SQLITE_STATIC);
	store_db_bind_text(s, 3, t->user_uuid);
	store_db_bind_text(s, 4, t->team_uuid);
	store_db_bind_text(s, 5, t->kid);
	store_db_bind_text(s, 6, t->name);
	sqlite3_bind_int64(s, 7, t->issued_at);
	sqlite3_bind_int64(s, 8, t->updated_at);
	sqlite3_bind_int64(s, 9, t->expires_at);
	rc = store_db_exec(c, s, "api add");
out:
	return store_db_end(c, rc);
}

int store_api_token_version(struct store *st, const char *team_uuid, const char *user_uuid,
			    bool *member, int64_t *version)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_API_VERSION) : NULL;
	int rc;

	*member = false;
	*version = 0;
	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, team_uuid);
	store_db_bind_text(s, 2, user_uuid);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*member = true;
		*version = sqlite3_column_int64(s, 0);
	}
	store_db_done(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_error(c, "api version");
	return 0;
}

int store_api_token_list(struct store *st, const char *user_uuid, const char *team_uuid,
			 int64_t now, int (*fn)(const struct store_api_token *t, void *arg),
			 void *arg)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_API_LIST) : NULL;
	struct store_api_token t;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, user_uuid);
	store_db_bind_text(s, 2, team_uuid);
	sqlite3_bind_int64(s, 3, now);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&t, 0, sizeof(t));
		store_db_copy_col(s, 0, t.jti, sizeof(t.jti));
		store_db_copy_col(s, 1, t.kid, sizeof(t.kid));
		store_db_copy_col(s, 2, t.name, sizeof(t.name));
		memcpy(t.user_uuid, user_uuid, UUID_STR_LEN);
		memcpy(t.team_uuid, team_uuid, UUID_STR_LEN);
		t.issued_at = sqlite3_column_int64(s, 3);
		t.updated_at = sqlite3_column_int64(s, 4);
		t.expires_at = sqlite3_column_int64(s, 5);
		if (fn(&t, arg) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	store_db_done(s);
	return rc == SQLITE_DONE ? 0 : store_db_error(c, "api list");
}

int store_api_token_by_digest(struct store *st, const unsigned char digest[32],
			      char jti[UUID_STR_LEN])
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_API_BY_DIGEST) : NULL;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	sqlite3_bind_blob(s, 1, digest, 32, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		store_db_copy_col(s, 0, jti, UUID_STR_LEN);
	store_db_done(s);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? TOKEND_ENOTFOUND : store_db_error(c, "api by digest");
}

int store_api_token_delete(struct store *st, const char *user_uuid, const char *team_uuid,
			   int64_t now, const char *const *jtis, size_t n, long *deleted)
{
	struct conn *c = NULL;
	sqlite3_stmt *s;
	int rc;

	*deleted = 0;
	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	s = store_db_stmt(c, S_API_DELETE);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (s == NULL) {
			rc = TOKEND_EDB;
			break;
		}
		store_db_bind_text(s, 1, jtis[i]);
		store_db_bind_text(s, 2, user_uuid);
		store_db_bind_text(s, 3, team_uuid);
		sqlite3_bind_int64(s, 4, now);
		rc = store_db_exec(c, s, "api delete");
		if (rc == 0)
			*deleted += sqlite3_changes(c->db);
	}
	rc = store_db_end(c, rc);
	if (rc != 0)
		*deleted = 0;
	return rc;
}

int store_api_token_live(struct store *st, const char *jti, const char *user_uuid,
			 const char *team_uuid, bool *live)
{
	const char *params[] = {jti, user_uuid, team_uuid};

	return store_db_exists(st, S_API_LIVE, params, 3, live);
}
