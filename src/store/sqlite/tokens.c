/* SPDX-License-Identifier: MIT */
/*
 * This module implements the token rows of the SQLite backend: refresh
 * tokens (recorded, read for a rotation or a logout, marked used, checked
 * live, purged) and API tokens (counted, added, listed, found by digest,
 * deleted, checked live, purged), and whether a key still signs a live
 * token. The rules that use them are store.c's.
 */
#include <sqlite3.h>
#include <string.h>

#include "store/sqlite/sqlite.h"
#include "tokend/err.h"

static const char *const stmt_sql[S_COUNT] = {
	[S_REFRESH_ADD] = "INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, "
			  "issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	/* A family without a live session row counts as revoked. */
	[S_REFRESH_GET] = "SELECT r.family, r.user_uuid, r.used_at, "
			  "r.revoked OR s.id IS NULL OR s.revoked_at IS NOT NULL, "
			  "coalesce(r.replaced_by, ''), u.is_active, "
			  "coalesce(s.created_at, r.issued_at) "
			  "FROM refresh_tokens r JOIN users u ON u.uuid = r.user_uuid "
			  "LEFT JOIN sessions s ON s.id = r.family "
			  "WHERE r.jti = ?1",
	[S_REFRESH_ROW] = "SELECT r.jti, r.family, r.user_uuid, r.kid, r.access_jti, r.issued_at, "
			  "r.expires_at, coalesce(s.created_at, r.issued_at) "
			  "FROM refresh_tokens r LEFT JOIN sessions s ON s.id = r.family "
			  "WHERE r.jti = ?1 AND r.used_at IS NULL AND r.revoked = 0",
	[S_REFRESH_USE] = "UPDATE refresh_tokens SET used_at = ?2, replaced_by = ?3 "
			  "WHERE jti = ?1 AND used_at IS NULL",
	[S_REFRESH_LIVE] = "SELECT 1 FROM refresh_tokens r "
			   "JOIN sessions s ON s.id = r.family AND s.revoked_at IS NULL "
			   "JOIN users u ON u.uuid = r.user_uuid AND u.is_active = 1 "
			   "WHERE r.jti = ?1 AND r.user_uuid = ?2 "
			   "AND r.used_at IS NULL AND r.revoked = 0",
	[S_REFRESH_PURGE] = "DELETE FROM refresh_tokens WHERE rowid IN (SELECT rowid FROM "
			    "refresh_tokens WHERE expires_at <= ?1 LIMIT ?2)",
	[S_KEY_IN_USE] = "SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE kid = ?1 AND "
			 "((used_at IS NULL AND revoked = 0 AND expires_at > ?2) "
			 "OR issued_at + ?3 > ?2)) "
			 "OR EXISTS (SELECT 1 FROM api_tokens WHERE kid = ?1 AND expires_at > ?2)",
	[S_API_VERSION] = "SELECT coalesce((SELECT version FROM api_token_versions "
			  "WHERE user_uuid = ?2 AND team_uuid = ?1), 0) "
			  "FROM team_members WHERE team_uuid = ?1 AND user_uuid = ?2",
	/* The pair's rows (006) less its expired ones: one index seek unless
	 * some have expired and wait for the sweep, not a walk of the live. */
	[S_API_COUNT] = "SELECT coalesce((SELECT tokens FROM api_token_versions "
			"WHERE user_uuid = ?1 AND team_uuid = ?2), 0) - "
			"(SELECT count(*) FROM api_tokens "
			"WHERE user_uuid = ?1 AND team_uuid = ?2 AND expires_at <= ?3)",
	[S_API_ADD] = "INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, name, "
		      "issued_at, updated_at, expires_at) "
		      "VALUES (?1, ?2, ?3, ?4, ?5, nullif(?6, ''), ?7, ?8, ?9)",
	[S_API_LIST] = "SELECT jti, kid, coalesce(name, ''), issued_at, updated_at, expires_at "
		       "FROM api_tokens WHERE user_uuid = ?1 AND team_uuid = ?2 "
		       "AND expires_at > ?3 ORDER BY issued_at DESC, rowid DESC",
	[S_API_BY_DIGEST] = "SELECT jti FROM api_tokens WHERE digest = ?1",
	[S_API_DELETE] = "DELETE FROM api_tokens "
			 "WHERE jti = ?1 AND user_uuid = ?2 AND team_uuid = ?3 AND expires_at > ?4",
	[S_API_PURGE] = "DELETE FROM api_tokens WHERE rowid IN (SELECT rowid FROM "
			"api_tokens WHERE expires_at <= ?1 LIMIT ?2)",
	[S_API_LIVE] = "SELECT 1 FROM api_tokens a "
		       "JOIN users u ON u.uuid = a.user_uuid AND u.is_active = 1 "
		       "JOIN team_members m ON m.team_uuid = a.team_uuid "
		       "AND m.user_uuid = a.user_uuid "
		       "WHERE a.jti = ?1 AND a.user_uuid = ?2 AND a.team_uuid = ?3",
	[S_API_DELETE_USER] = "DELETE FROM api_tokens WHERE user_uuid = ?1",
	[S_API_DELETE_MEMBER] = "DELETE FROM api_tokens WHERE user_uuid = ?2 AND team_uuid = ?1",
	[S_SESSION_ENDS_PURGE] = "DELETE FROM session_ends WHERE seq IN (SELECT seq FROM "
				 "session_ends WHERE ended_at <= ?1 LIMIT ?2)",
};

int sq_refresh_add(struct store_tx *tx, const struct store_refresh *r)
{
	sqlite3_stmt *s = STMT(tx->c, S_REFRESH_ADD);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, r->jti);
	store_db_bind_text(s, 2, r->family);
	store_db_bind_text(s, 3, r->user_uuid);
	store_db_bind_text(s, 4, r->kid);
	store_db_bind_text(s, 5, r->access_jti);
	sqlite3_bind_int64(s, 6, r->issued_at);
	sqlite3_bind_int64(s, 7, r->expires_at);
	return store_db_exec(tx->c, s, "refresh add");
}

int sq_refresh_row(struct store_tx *tx, const char *jti, struct store_refresh *out)
{
	struct conn *c = tx->c;
	sqlite3_stmt *s = STMT(c, S_REFRESH_ROW);
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

/* No lock to take: the transaction is IMMEDIATE, the only writer of the file. */
int sq_refresh_state(struct store_tx *tx, const char *jti, struct store_refresh_state *rs)
{
	struct conn *c = tx->c;
	sqlite3_stmt *s = STMT(c, S_REFRESH_GET);
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

int sq_refresh_use(struct store_tx *tx, const char *jti, int64_t now, const char *next_jti)
{
	sqlite3_stmt *s = STMT(tx->c, S_REFRESH_USE);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, jti);
	sqlite3_bind_int64(s, 2, now);
	store_db_bind_text(s, 3, next_jti);
	return store_db_exec_changes(tx->c, s, "refresh use");
}

int sq_refresh_live(struct store_db *db, const char *jti, const char *user_uuid, bool *live)
{
	const char *params[] = {jti, user_uuid};
	struct conn *c = store_db_conn(db);

	if (c == NULL)
		return TOKEND_EDB;
	return store_db_exists(c, STMT(c, S_REFRESH_LIVE), params, 2, live);
}

int sq_purge(struct store_tx *tx, enum store_purge_table t, int64_t before, long limit,
	     long *deleted)
{
	static const enum stmt_id purges[STORE_PURGE_TABLES] = {
		[STORE_PURGE_REFRESH] = S_REFRESH_PURGE,
		[STORE_PURGE_API] = S_API_PURGE,
		[STORE_PURGE_SESSION_ENDS] = S_SESSION_ENDS_PURGE,
	};
	sqlite3_stmt *s = STMT(tx->c, purges[t]);
	int rc;

	*deleted = 0;
	if (s == NULL)
		return TOKEND_EDB;
	sqlite3_bind_int64(s, 1, before);
	sqlite3_bind_int64(s, 2, limit);
	rc = store_db_exec(tx->c, s, "purge");
	if (rc == 0)
		*deleted = (long)sqlite3_changes(tx->c->db);
	return rc;
}

int sq_key_in_use(struct store_db *db, const char *kid, int64_t now, long access_lifetime,
		  bool *in_use)
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_KEY_IN_USE) : NULL;
	int64_t v = 1;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, kid);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int64(s, 3, access_lifetime);
	rc = store_db_int(c, s, "key in use", &v);
	if (rc == 0)
		*in_use = v != 0;
	return rc;
}

int sq_api_count(struct store_tx *tx, const char *user_uuid, const char *team_uuid, int64_t now,
		 long *count)
{
	sqlite3_stmt *s = STMT(tx->c, S_API_COUNT);
	int64_t n = 0;
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, user_uuid);
	store_db_bind_text(s, 2, team_uuid);
	sqlite3_bind_int64(s, 3, now);
	rc = store_db_int(tx->c, s, "api count", &n);
	if (rc == 0)
		*count = (long)n;
	return rc;
}

int sq_api_add(struct store_tx *tx, const struct store_api_token *t)
{
	sqlite3_stmt *s = STMT(tx->c, S_API_ADD);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, t->jti);
	sqlite3_bind_blob(s, 2, t->digest, sizeof(t->digest), SQLITE_STATIC);
	store_db_bind_text(s, 3, t->user_uuid);
	store_db_bind_text(s, 4, t->team_uuid);
	store_db_bind_text(s, 5, t->kid);
	store_db_bind_text(s, 6, t->name);
	sqlite3_bind_int64(s, 7, t->issued_at);
	sqlite3_bind_int64(s, 8, t->updated_at);
	sqlite3_bind_int64(s, 9, t->expires_at);
	return store_db_exec(tx->c, s, "api add");
}

int sq_api_version(struct store_db *db, const char *team_uuid, const char *user_uuid, bool *member,
		   int64_t *version)
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_API_VERSION) : NULL;
	int rc;

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

int sq_api_list(struct store_db *db, const char *user_uuid, const char *team_uuid, int64_t now,
		int (*fn)(const struct store_api_token *t, void *arg), void *arg)
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_API_LIST) : NULL;
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

int sq_api_by_digest(struct store_db *db, const unsigned char digest[32], char jti[UUID_STR_LEN])
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_API_BY_DIGEST) : NULL;
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

int sq_api_delete(struct store_tx *tx, const char *jti, const char *user_uuid,
		  const char *team_uuid, int64_t now, long *deleted)
{
	sqlite3_stmt *s = STMT(tx->c, S_API_DELETE);
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, jti);
	store_db_bind_text(s, 2, user_uuid);
	store_db_bind_text(s, 3, team_uuid);
	sqlite3_bind_int64(s, 4, now);
	rc = store_db_exec(tx->c, s, "api delete");
	if (rc == 0)
		*deleted += sqlite3_changes(tx->c->db);
	return rc;
}

int sq_api_delete_all(struct store_tx *tx, const char *user_uuid, const char *team_uuid)
{
	sqlite3_stmt *s = STMT(tx->c, team_uuid != NULL ? S_API_DELETE_MEMBER : S_API_DELETE_USER);

	if (s == NULL)
		return TOKEND_EDB;
	if (team_uuid != NULL) {
		store_db_bind_text(s, 1, team_uuid);
		store_db_bind_text(s, 2, user_uuid);
	} else {
		store_db_bind_text(s, 1, user_uuid);
	}
	return store_db_exec(tx->c, s, "api delete all");
}

int sq_api_live(struct store_db *db, const char *jti, const char *user_uuid, const char *team_uuid,
		bool *live)
{
	const char *params[] = {jti, user_uuid, team_uuid};
	struct conn *c = store_db_conn(db);

	if (c == NULL)
		return TOKEND_EDB;
	return store_db_exists(c, STMT(c, S_API_LIVE), params, 3, live);
}
