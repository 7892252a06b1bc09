/* SPDX-License-Identifier: MIT */
/*
 * This module implements the tokens of the PostgreSQL backend, with their
 * SQL: refresh rows (add, the locked state a rotation or a logout decides
 * on, the conditional use), API tokens (the locked count under the cap,
 * add, list, lookups, deletes), the purge and whether a key is in use. The
 * statements are the SQLite backend's with $n parameters.
 *
 * Several instances may share the database, at READ COMMITTED. Two ops
 * lock before they read, so that the second of two transactions deciding on
 * the same rows waits for the first and then sees its change:
 * - refresh_state locks the row's session (FOR UPDATE) in one statement and
 *   reads the row's state in the next: a statement that began after the
 *   lock wait sees what the other transaction committed, whereas the read of
 *   a join locked in the same statement would not be re-read in full.
 * - api_count locks the membership row before it counts, so that
 *   concurrent issues for one user in one team cannot pass the cap.
 * refresh_use is one conditional UPDATE: of two uses of one token, the
 * second finds it used (0 rows).
 *
 * Round trips (conn.c's pipeline): a rotation waits for two answers, the
 * state (BEGIN, the lock and the read go together) and the COMMIT, which
 * carries the use and the new row. The new row's insert is deferred: nobody
 * reads its answer, and an error in it fails the COMMIT. The use is
 * deferred only when this transaction has just read the row unused under
 * its session's lock (refresh_state): every writer of a refresh row takes
 * that lock first (sessions.c, the purge, a user's deletion), so the
 * UPDATE cannot find it used. Should something that ignores the lock (a
 * hand-written UPDATE) have used it all the same, refresh_use_locked fails
 * the statement (a division by zero, 22012) and with it the COMMIT: the
 * rotation answers 503 (TOKEND_EBUSY) and nothing is written. A token is
 * spent once either way.
 */
#include <string.h>

#include "store/postgres/pg.h"
#include "tokend/err.h"

static const struct store_pg_stmt refresh_add = {
	PG_REFRESH_ADD, "refresh add",
	"INSERT INTO refresh_tokens (jti, family, user_uuid, kid, access_jti, issued_at, "
	"expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
	7, 0};
static const struct store_pg_stmt refresh_lock = {
	PG_REFRESH_LOCK, "refresh lock",
	"SELECT 1 FROM sessions WHERE id = (SELECT family FROM refresh_tokens WHERE jti = $1) "
	"FOR UPDATE",
	1, 0};
/* A family without a live session row counts as revoked. */
static const struct store_pg_stmt refresh_get = {
	PG_REFRESH_GET, "refresh get",
	"SELECT r.family, r.user_uuid, r.used_at, "
	"(r.revoked = 1 OR s.id IS NULL OR s.revoked_at IS NOT NULL)::int, "
	"coalesce(r.replaced_by, ''), u.is_active, coalesce(s.created_at, r.issued_at) "
	"FROM refresh_tokens r JOIN users u ON u.uuid = r.user_uuid "
	"LEFT JOIN sessions s ON s.id = r.family WHERE r.jti = $1",
	1, 0};
static const struct store_pg_stmt refresh_row = {
	PG_REFRESH_ROW, "refresh row",
	"SELECT r.jti, r.family, r.user_uuid, r.kid, r.access_jti, r.issued_at, r.expires_at, "
	"coalesce(s.created_at, r.issued_at) "
	"FROM refresh_tokens r LEFT JOIN sessions s ON s.id = r.family "
	"WHERE r.jti = $1 AND r.used_at IS NULL AND r.revoked = 0",
	1, 0};
static const struct store_pg_stmt refresh_use = {
	PG_REFRESH_USE, "refresh use",
	"UPDATE refresh_tokens SET used_at = $2, replaced_by = $3 "
	"WHERE jti = $1 AND used_at IS NULL",
	3, 0};
/* refresh_use that fails (22012) unless it used the row: see the top of this file. */
static const struct store_pg_stmt refresh_use_locked = {
	PG_REFRESH_USE_LOCKED, "refresh use",
	"WITH u AS (UPDATE refresh_tokens SET used_at = $2, replaced_by = $3 "
	"WHERE jti = $1 AND used_at IS NULL RETURNING 1) SELECT 1 / count(*) FROM u",
	3, 0};
static const struct store_pg_stmt refresh_live = {
	PG_REFRESH_LIVE, "refresh live",
	"SELECT 1 FROM refresh_tokens r "
	"JOIN sessions s ON s.id = r.family AND s.revoked_at IS NULL "
	"JOIN users u ON u.uuid = r.user_uuid AND u.is_active = 1 "
	"WHERE r.jti = $1 AND r.user_uuid = $2 AND r.used_at IS NULL AND r.revoked = 0",
	2, 0};
static const struct store_pg_stmt api_lock = {
	PG_API_LOCK, "api lock",
	"SELECT 1 FROM team_members WHERE team_uuid = $1 AND user_uuid = $2 FOR UPDATE", 2, 0};
static const struct store_pg_stmt api_count = {
	PG_API_COUNT, "api count",
	"SELECT coalesce((SELECT tokens FROM api_token_versions "
	"WHERE user_uuid = $1 AND team_uuid = $2), 0) - "
	"(SELECT count(*) FROM api_tokens WHERE user_uuid = $1 AND team_uuid = $2 "
	"AND expires_at <= $3)",
	3, 0};
static const struct store_pg_stmt api_add = {
	PG_API_ADD, "api add",
	"INSERT INTO api_tokens (jti, digest, user_uuid, team_uuid, kid, name, issued_at, "
	"updated_at, expires_at) VALUES ($1, $2, $3, $4, $5, nullif($6, ''), $7, $8, $9)",
	9, 1u << 1};
static const struct store_pg_stmt api_version = {
	PG_API_VERSION, "api version",
	"SELECT coalesce((SELECT version FROM api_token_versions "
	"WHERE user_uuid = $2 AND team_uuid = $1), 0) "
	"FROM team_members WHERE team_uuid = $1 AND user_uuid = $2",
	2, 0};
/* Newest first; seq is SQLite's rowid, the order of insertion. */
static const struct store_pg_stmt api_list = {
	PG_API_LIST, "api list",
	"SELECT jti, kid, coalesce(name, ''), issued_at, updated_at, expires_at "
	"FROM api_tokens WHERE user_uuid = $1 AND team_uuid = $2 AND expires_at > $3 "
	"ORDER BY issued_at DESC, seq DESC",
	3, 0};
static const struct store_pg_stmt api_by_digest = {PG_API_BY_DIGEST, "api by digest",
						   "SELECT jti FROM api_tokens WHERE digest = $1",
						   1, 1u << 0};
static const struct store_pg_stmt api_delete = {
	PG_API_DELETE, "api delete",
	"DELETE FROM api_tokens "
	"WHERE jti = $1 AND user_uuid = $2 AND team_uuid = $3 AND expires_at > $4",
	4, 0};
static const struct store_pg_stmt api_delete_member = {
	PG_API_DELETE_MEMBER, "member tokens delete",
	"DELETE FROM api_tokens WHERE user_uuid = $1 AND team_uuid = $2", 2, 0};
static const struct store_pg_stmt api_delete_user = {PG_API_DELETE_USER, "user tokens delete",
						     "DELETE FROM api_tokens WHERE user_uuid = $1",
						     1, 0};
static const struct store_pg_stmt api_live = {
	PG_API_LIVE, "api live",
	"SELECT 1 FROM api_tokens a "
	"JOIN users u ON u.uuid = a.user_uuid AND u.is_active = 1 "
	"JOIN team_members m ON m.team_uuid = a.team_uuid AND m.user_uuid = a.user_uuid "
	"WHERE a.jti = $1 AND a.user_uuid = $2 AND a.team_uuid = $3",
	3, 0};
/*
 * The purges take at most $2 due rows, skipping rows another transaction
 * holds (a rotation, another instance's purge): the sweep never waits, and
 * what it skips is due at its next pass. A refresh row is taken with its
 * session's row, which the schema's delete trigger locks
 * (sql/postgres/004_sessions.sql): taking the row first and waiting for the
 * session after would deadlock with a transaction that holds the session
 * and then revokes the family's rows (a reuse, a logout).
 */
static const struct store_pg_stmt purge_refresh = {
	PG_PURGE_REFRESH, "purge refresh",
	"DELETE FROM refresh_tokens WHERE jti IN (SELECT r.jti FROM refresh_tokens r "
	"JOIN sessions s ON s.id = r.family WHERE r.expires_at <= $1 LIMIT $2 "
	"FOR UPDATE OF r, s SKIP LOCKED)",
	2, 0};
/* Rows without a session (a session row deleted by hand): nothing to lock but them. */
static const struct store_pg_stmt purge_refresh_orphans = {
	PG_PURGE_REFRESH_ORPHANS, "purge refresh",
	"DELETE FROM refresh_tokens WHERE jti IN (SELECT r.jti FROM refresh_tokens r "
	"WHERE r.expires_at <= $1 AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = r.family) "
	"LIMIT $2 FOR UPDATE SKIP LOCKED)",
	2, 0};
static const struct store_pg_stmt purge_api = {
	PG_PURGE_API, "purge api",
	"DELETE FROM api_tokens WHERE jti IN (SELECT jti FROM api_tokens "
	"WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
	2, 0};
static const struct store_pg_stmt purge_session_ends = {
	PG_PURGE_SESSION_ENDS, "purge session ends",
	"DELETE FROM session_ends WHERE seq IN (SELECT seq FROM session_ends "
	"WHERE ended_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
	2, 0};
static const struct store_pg_stmt key_in_use = {
	PG_KEY_IN_USE, "key in use",
	"SELECT (EXISTS (SELECT 1 FROM refresh_tokens WHERE kid = $1 AND "
	"((used_at IS NULL AND revoked = 0 AND expires_at > $2::bigint) "
	"OR issued_at + $3::bigint > $2::bigint)) "
	"OR EXISTS (SELECT 1 FROM api_tokens WHERE kid = $1 AND expires_at > $2::bigint))::int",
	3, 0};

int store_pg_refresh_add(struct store_tx *tx, const struct store_refresh *r)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char iat[PG_I64_LEN], exp[PG_I64_LEN];
	const char *params[] = {r->jti,
				r->family,
				r->user_uuid,
				r->kid,
				r->access_jti,
				store_pg_i64(iat, r->issued_at),
				store_pg_i64(exp, r->expires_at)};

	return c ? store_pg_defer(c, &refresh_add, params, NULL) : TOKEND_EDB;
}

int store_pg_refresh_state(struct store_tx *tx, const char *jti, struct store_refresh_state *out)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *params[] = {jti};
	PGresult *r;
	int rc;

	memset(out, 0, sizeof(*out));
	if (c == NULL)
		return TOKEND_EDB;
	/* First the lock (a separate statement: see the top of this file),
	 * sent with the read: one round trip. */
	rc = store_pg_defer(c, &refresh_lock, params, NULL);
	if (rc == 0)
		rc = store_pg_run(c, &refresh_get, params, NULL, &r);
	if (rc != 0)
		return rc;
	if (PQntuples(r) > 0) {
		out->found = true;
		store_pg_copy(r, 0, 0, out->family, sizeof(out->family));
		store_pg_copy(r, 0, 1, out->owner, sizeof(out->owner));
		out->used = !store_pg_null(r, 0, 2);
		out->used_at = out->used ? store_pg_get_i64(r, 0, 2) : 0;
		out->revoked = store_pg_get_i64(r, 0, 3) != 0;
		store_pg_copy(r, 0, 4, out->replaced_by, sizeof(out->replaced_by));
		out->active = store_pg_get_i64(r, 0, 5) != 0;
		out->session_created_at = store_pg_get_i64(r, 0, 6);
	}
	/* Unrevoked: its session row exists, and this transaction holds its lock. */
	if (out->found && !out->used && !out->revoked && c->piped)
		memcpy(c->unused_jti, jti, strnlen(jti, UUID_STR_LEN - 1) + 1);
	else
		c->unused_jti[0] = '\0';
	PQclear(r);
	return 0;
}

int store_pg_refresh_row(struct store_tx *tx, const char *jti, struct store_refresh *out)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *params[] = {jti};
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &refresh_row, params, NULL, &r);
	if (rc != 0)
		return rc;
	if (PQntuples(r) == 0) {
		rc = TOKEND_ENOTFOUND;
	} else {
		store_pg_copy(r, 0, 0, out->jti, sizeof(out->jti));
		store_pg_copy(r, 0, 1, out->family, sizeof(out->family));
		store_pg_copy(r, 0, 2, out->user_uuid, sizeof(out->user_uuid));
		store_pg_copy(r, 0, 3, out->kid, sizeof(out->kid));
		store_pg_copy(r, 0, 4, out->access_jti, sizeof(out->access_jti));
		out->issued_at = store_pg_get_i64(r, 0, 5);
		out->expires_at = store_pg_get_i64(r, 0, 6);
		out->session_created_at = store_pg_get_i64(r, 0, 7);
	}
	PQclear(r);
	return rc;
}

int store_pg_refresh_use(struct store_tx *tx, const char *jti, int64_t now, const char *next_jti)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char at[PG_I64_LEN];
	const char *params[] = {jti, store_pg_i64(at, now), next_jti};

	if (c == NULL)
		return TOKEND_EDB;
	if (c->unused_jti[0] != '\0' && strcmp(c->unused_jti, jti) == 0) {
		c->unused_jti[0] = '\0'; /* used now: a second use is asked of the database */
		return store_pg_defer(c, &refresh_use_locked, params, NULL);
	}
	return store_pg_change1(c, &refresh_use, params);
}

/* Runs an existence query s on the thread's connection: *found = it returned a row. */
static int exists(struct store_db *db, const struct store_pg_stmt *s, const char *const *params,
		  bool *found)
{
	struct store_pg_conn *c = store_pg_conn(db);
	int64_t v;

	*found = false;
	if (c == NULL)
		return TOKEND_EDB;
	return store_pg_int(c, s, params, found, &v);
}

int store_pg_refresh_live(struct store_db *db, const char *jti, const char *user_uuid, bool *live)
{
	const char *params[] = {jti, user_uuid};

	return exists(db, &refresh_live, params, live);
}

int store_pg_api_count(struct store_tx *tx, const char *user_uuid, const char *team_uuid,
		       int64_t now, long *count)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *p_lock[] = {team_uuid, user_uuid};
	char at[PG_I64_LEN];
	const char *params[] = {user_uuid, team_uuid, store_pg_i64(at, now)};
	bool found;
	int64_t v = 0;
	int rc;

	*count = 0;
	if (c == NULL)
		return TOKEND_EDB;
	/* The lock goes down the pipeline with the count, which the server
	 * runs after it: one round trip instead of two. */
	rc = store_pg_defer(c, &api_lock, p_lock, NULL);
	if (rc == 0)
		rc = store_pg_int(c, &api_count, params, &found, &v);
	if (rc == 0)
		*count = (long)v;
	return rc;
}

int store_pg_api_add(struct store_tx *tx, const struct store_api_token *t)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char iat[PG_I64_LEN], upd[PG_I64_LEN], exp[PG_I64_LEN];
	const char *params[] = {t->jti,
				(const char *)t->digest,
				t->user_uuid,
				t->team_uuid,
				t->kid,
				t->name,
				store_pg_i64(iat, t->issued_at),
				store_pg_i64(upd, t->updated_at),
				store_pg_i64(exp, t->expires_at)};
	const int lens[] = {0, (int)sizeof(t->digest), 0, 0, 0, 0, 0, 0, 0};

	/* Deferred to the COMMIT, which fails with it (EEXISTS, ENOTFOUND). */
	return c ? store_pg_defer(c, &api_add, params, lens) : TOKEND_EDB;
}

int store_pg_api_version(struct store_db *db, const char *team_uuid, const char *user_uuid,
			 bool *member, int64_t *version)
{
	struct store_pg_conn *c = store_pg_conn(db);
	const char *params[] = {team_uuid, user_uuid};

	*member = false;
	*version = 0;
	if (c == NULL)
		return TOKEND_EDB;
	return store_pg_int(c, &api_version, params, member, version);
}

int store_pg_api_list(struct store_db *db, const char *user_uuid, const char *team_uuid,
		      int64_t now, int (*fn)(const struct store_api_token *t, void *arg), void *arg)
{
	struct store_pg_conn *c = store_pg_conn(db);
	char at[PG_I64_LEN];
	const char *params[] = {user_uuid, team_uuid, store_pg_i64(at, now)};
	struct store_api_token t;
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &api_list, params, NULL, &r);
	if (rc != 0)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		memset(&t, 0, sizeof(t));
		store_pg_copy(r, i, 0, t.jti, sizeof(t.jti));
		store_pg_copy(r, i, 1, t.kid, sizeof(t.kid));
		store_pg_copy(r, i, 2, t.name, sizeof(t.name));
		memcpy(t.user_uuid, user_uuid, strnlen(user_uuid, UUID_STR_LEN - 1));
		memcpy(t.team_uuid, team_uuid, strnlen(team_uuid, UUID_STR_LEN - 1));
		t.issued_at = store_pg_get_i64(r, i, 3);
		t.updated_at = store_pg_get_i64(r, i, 4);
		t.expires_at = store_pg_get_i64(r, i, 5);
		if (fn(&t, arg) != 0)
			break;
	}
	PQclear(r);
	return 0;
}

int store_pg_api_by_digest(struct store_db *db, const unsigned char digest[32],
			   char jti[UUID_STR_LEN])
{
	struct store_pg_conn *c = store_pg_conn(db);
	const char *params[] = {(const char *)digest};
	const int lens[] = {32};
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &api_by_digest, params, lens, &r);
	if (rc != 0)
		return rc;
	if (PQntuples(r) == 0)
		rc = TOKEND_ENOTFOUND;
	else
		store_pg_copy(r, 0, 0, jti, UUID_STR_LEN);
	PQclear(r);
	return rc;
}

int store_pg_api_delete(struct store_tx *tx, const char *jti, const char *user_uuid,
			const char *team_uuid, int64_t now, long *deleted)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char at[PG_I64_LEN];
	const char *params[] = {jti, user_uuid, team_uuid, store_pg_i64(at, now)};
	long n = 0;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_change(c, &api_delete, params, NULL, &n);
	if (rc == 0)
		*deleted += n;
	return rc;
}

int store_pg_api_delete_all(struct store_tx *tx, const char *user_uuid, const char *team_uuid)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	const char *params[] = {user_uuid, team_uuid};
	long n;

	if (c == NULL)
		return TOKEND_EDB;
	return store_pg_change(c, team_uuid ? &api_delete_member : &api_delete_user, params, NULL,
			       &n);
}

int store_pg_api_live(struct store_db *db, const char *jti, const char *user_uuid,
		      const char *team_uuid, bool *live)
{
	const char *params[] = {jti, user_uuid, team_uuid};

	return exists(db, &api_live, params, live);
}

int store_pg_purge(struct store_tx *tx, enum store_purge_table t, int64_t before, long limit,
		   long *deleted)
{
	static const struct store_pg_stmt *const purges[STORE_PURGE_TABLES] = {
		[STORE_PURGE_REFRESH] = &purge_refresh,
		[STORE_PURGE_API] = &purge_api,
		[STORE_PURGE_SESSION_ENDS] = &purge_session_ends,
	};
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char b[PG_I64_LEN], l[PG_I64_LEN];
	const char *params[] = {store_pg_i64(b, before), store_pg_i64(l, limit)};
	long more = 0;
	int rc;

	*deleted = 0;
	if (c == NULL)
		return TOKEND_EDB;
	c->unused_jti[0] = '\0'; /* refresh rows change: refresh_use asks the database */
	if ((unsigned)t >= STORE_PURGE_TABLES)
		return TOKEND_EINVAL;
	rc = store_pg_change(c, purges[t], params, NULL, deleted);
	if (rc != 0 || t != STORE_PURGE_REFRESH || *deleted >= limit)
		return rc;
	store_pg_i64(l, limit - *deleted);
	rc = store_pg_change(c, &purge_refresh_orphans, params, NULL, &more);
	*deleted += more;
	return rc;
}

int store_pg_key_in_use(struct store_db *db, const char *kid, int64_t now, long access_lifetime,
			bool *in_use)
{
	struct store_pg_conn *c = store_pg_conn(db);
	char n[PG_I64_LEN], a[PG_I64_LEN];
	const char *params[] = {kid, store_pg_i64(n, now), store_pg_i64(a, access_lifetime)};
	bool found;
	int64_t v = 0;
	int rc;

	*in_use = false;
	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_int(c, &key_in_use, params, &found, &v);
	if (rc == 0)
		*in_use = v != 0;
	return rc;
}
