/* SPDX-License-Identifier: MIT */
/*
 * This module implements the sessions of the PostgreSQL backend, with their
 * SQL: a session's state, ending sessions with their refresh rows, and the
 * session_ends log other instances follow (its rows are the schema's to
 * write: sql/postgres/005_session_ends.sql).
 *
 * Lock order: ending sessions changes the session rows first and their
 * refresh rows after, the order a rotation takes them in (refresh_state
 * locks the session, refresh_use then changes the row), so that a
 * rotation and a user-wide end (`user passwd`, `user disable`) wait for one
 * another instead of deadlocking. (SQLite changes the refresh rows first;
 * with one writer at a time the order does not matter there.)
 */
#include <string.h>

#include "store/postgres/pg.h"
#include "tokend/err.h"

static const struct store_pg_stmt session_add = {
	PG_SESSION_ADD, "session add",
	"INSERT INTO sessions (id, user_uuid, created_at) VALUES ($1, $2, $3)", 3, 0};
/* No row: no such user. Else is_active, and whether the session is live. */
static const struct store_pg_stmt session_state = {
	PG_SESSION_STATE, "session state",
	"SELECT u.is_active, EXISTS (SELECT 1 FROM sessions s "
	"WHERE s.id = $1 AND s.user_uuid = u.uuid AND s.revoked_at IS NULL)::int "
	"FROM users u WHERE u.uuid = $2",
	2, 0};
/* No row: no such session, which counts as ended. */
static const struct store_pg_stmt session_ended = {
	PG_SESSION_ENDED, "session ended",
	"SELECT (revoked_at IS NULL)::int FROM sessions WHERE id = $1", 1, 0};
static const struct store_pg_stmt session_end = {
	PG_SESSION_END, "session end",
	"UPDATE sessions SET revoked_at = $3 "
	"WHERE id = $1 AND user_uuid = $2 AND revoked_at IS NULL",
	3, 0};
static const struct store_pg_stmt user_sessions_end = {
	PG_USER_SESSIONS_END, "sessions end",
	"UPDATE sessions SET revoked_at = $2 WHERE user_uuid = $1 AND revoked_at IS NULL", 2, 0};
/* Only the rows of that user: another's sid revokes nothing. */
static const struct store_pg_stmt session_refresh_revoke = {
	PG_SESSION_REFRESH_REVOKE, "session refresh revoke",
	"UPDATE refresh_tokens SET revoked = 1, used_at = coalesce(used_at, $2) "
	"WHERE family = $1 AND user_uuid = $3",
	3, 0};
/* By the user's sessions: refresh_tokens has no index on user_uuid. */
static const struct store_pg_stmt user_refresh_revoke = {
	PG_USER_REFRESH_REVOKE, "sessions refresh revoke",
	"UPDATE refresh_tokens SET revoked = 1, used_at = coalesce(used_at, $2) "
	"WHERE revoked = 0 AND family IN (SELECT id FROM sessions WHERE user_uuid = $1)",
	2, 0};
static const struct store_pg_stmt session_ends_since = {
	PG_SESSION_ENDS_SINCE, "session ends",
	"SELECT seq, sid, ended_at FROM session_ends WHERE seq > $1 ORDER BY seq", 1, 0};

int store_pg_session_add(struct store_tx *tx, const char *sid, const char *user_uuid,
			 int64_t created_at)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char at[PG_I64_LEN];
	const char *params[] = {sid, user_uuid, store_pg_i64(at, created_at)};

	return c ? store_pg_run(c, &session_add, params, NULL, NULL) : TOKEND_EDB;
}

int store_pg_session_state(struct store_db *db, const char *sid, const char *user_uuid,
			   enum store_session *state)
{
	struct store_pg_conn *c = store_pg_conn(db);
	const char *params[] = {sid, user_uuid};
	PGresult *r;
	int rc;

	*state = STORE_SESSION_ENDED;
	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &session_state, params, NULL, &r);
	if (rc != 0)
		return rc;
	if (PQntuples(r) == 0)
		*state = STORE_SESSION_NO_USER;
	else if (store_pg_get_i64(r, 0, 0) == 0)
		*state = STORE_SESSION_INACTIVE;
	else if (store_pg_get_i64(r, 0, 1) != 0)
		*state = STORE_SESSION_LIVE;
	PQclear(r);
	return 0;
}

int store_pg_session_ended(struct store_db *db, const char *sid, bool *ended)
{
	struct store_pg_conn *c = store_pg_conn(db);
	const char *params[] = {sid};
	PGresult *r;
	int rc;

	*ended = true;
	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &session_ended, params, NULL, &r);
	if (rc != 0)
		return rc;
	*ended = PQntuples(r) == 0 || store_pg_get_i64(r, 0, 0) == 0;
	PQclear(r);
	return 0;
}

int store_pg_sessions_end(struct store_tx *tx, const char *sid, const char *user_uuid, int64_t now,
			  long *ended)
{
	struct store_pg_conn *c = store_pg_tx_conn(tx);
	char at[PG_I64_LEN];
	long n = 0, revoked;
	int rc;

	if (ended != NULL)
		*ended = 0;
	if (c == NULL)
		return TOKEND_EDB;
	c->unused_jti[0] = '\0'; /* refresh rows change: refresh_use asks the database */
	store_pg_i64(at, now);
	if (sid != NULL) {
		const char *p_end[] = {sid, user_uuid, at};
		const char *p_rev[] = {sid, at, user_uuid};

		rc = store_pg_change(c, &session_end, p_end, NULL, &n);
		if (rc == 0)
			rc = store_pg_change(c, &session_refresh_revoke, p_rev, NULL, &revoked);
	} else {
		const char *params[] = {user_uuid, at};

		rc = store_pg_change(c, &user_sessions_end, params, NULL, &n);
		if (rc == 0)
			rc = store_pg_change(c, &user_refresh_revoke, params, NULL, &revoked);
	}
	if (ended != NULL)
		*ended = rc == 0 ? n : 0;
	return rc;
}

int store_pg_session_ends_since(struct store_db *db, int64_t after, store_session_end_fn fn,
				void *arg)
{
	struct store_pg_conn *c = store_pg_conn(db);
	char a[PG_I64_LEN];
	const char *params[] = {store_pg_i64(a, after)};
	char sid[UUID_STR_LEN];
	PGresult *r;
	int rc;

	if (c == NULL)
		return TOKEND_EDB;
	rc = store_pg_run(c, &session_ends_since, params, NULL, &r);
	if (rc != 0)
		return rc;
	for (int i = 0; i < PQntuples(r); i++) {
		store_pg_copy(r, i, 1, sid, sizeof(sid));
		if (fn(store_pg_get_i64(r, i, 0), sid, store_pg_get_i64(r, i, 2), arg) != 0)
			break;
	}
	PQclear(r);
	return 0;
}
