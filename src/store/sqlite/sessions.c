/* SPDX-License-Identifier: MIT */
/*
 * This module implements the sessions of the SQLite backend: a session is
 * one login (its refresh family, the tokens' "sid" claim). Its rows: the
 * session added with the login, its state (verify and Bearer
 * authentication ask for every access token), its end (one, or all of a
 * user's) together with its refresh rows, and the log of ended sessions
 * that sql/sqlite/005's triggers keep.
 */
#include <sqlite3.h>
#include <string.h>

#include "store/sqlite/sqlite.h"
#include "tokend/err.h"

static const char *const stmt_sql[S_COUNT] = {
	[S_SESSION_ADD] = "INSERT INTO sessions (id, user_uuid, created_at) VALUES (?1, ?2, ?3)",
	/* No row: no such user. Else is_active, and whether the session is live. */
	[S_SESSION_STATE] = "SELECT u.is_active, EXISTS (SELECT 1 FROM sessions s "
			    "WHERE s.id = ?1 AND s.user_uuid = u.uuid AND s.revoked_at IS NULL) "
			    "FROM users u WHERE u.uuid = ?2",
	[S_SESSION_END] = "UPDATE sessions SET revoked_at = ?3 "
			  "WHERE id = ?1 AND user_uuid = ?2 AND revoked_at IS NULL",
	[S_USER_SESSIONS_END] = "UPDATE sessions SET revoked_at = ?2 "
				"WHERE user_uuid = ?1 AND revoked_at IS NULL",
	[S_REFRESH_REVOKE] = "UPDATE refresh_tokens SET revoked = 1, "
			     "used_at = coalesce(used_at, ?2) WHERE family = ?1",
	/* By the user's sessions: refresh_tokens has no index on user_uuid. */
	[S_USER_REFRESH_REVOKE] = "UPDATE refresh_tokens SET revoked = 1, "
				  "used_at = coalesce(used_at, ?2) WHERE revoked = 0 AND family IN "
				  "(SELECT id FROM sessions WHERE user_uuid = ?1)",
	/* No row: ended long ago (purged) or never recorded; both are ended. */
	[S_SESSION_ENDED] = "SELECT revoked_at IS NULL FROM sessions WHERE id = ?1",
	[S_SESSION_ENDS_SINCE] = "SELECT seq, sid, ended_at FROM session_ends WHERE seq > ?1 "
				 "ORDER BY seq",
};

int sq_session_add(struct store_tx *tx, const char *sid, const char *user_uuid, int64_t created_at)
{
	sqlite3_stmt *s = STMT(tx->c, S_SESSION_ADD);

	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, sid);
	store_db_bind_text(s, 2, user_uuid);
	sqlite3_bind_int64(s, 3, created_at);
	return store_db_exec(tx->c, s, "session add");
}

int sq_session_state(struct store_db *db, const char *sid, const char *user_uuid,
		     enum store_session *state)
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_SESSION_STATE) : NULL;
	int rc;

	*state = STORE_SESSION_ENDED;
	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, sid);
	store_db_bind_text(s, 2, user_uuid);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		*state = STORE_SESSION_NO_USER;
	else if (rc == SQLITE_ROW && sqlite3_column_int(s, 0) == 0)
		*state = STORE_SESSION_INACTIVE;
	else if (rc == SQLITE_ROW && sqlite3_column_int(s, 1) != 0)
		*state = STORE_SESSION_LIVE;
	store_db_done(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_error(c, "session state");
	return 0;
}

int sq_session_ended(struct store_db *db, const char *sid, bool *ended)
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_SESSION_ENDED) : NULL;
	int rc;

	*ended = true;
	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, sid);
	rc = sqlite3_step(s);
	*ended = rc != SQLITE_ROW || sqlite3_column_int(s, 0) == 0;
	store_db_done(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_error(c, "session ended");
	return 0;
}

int sq_sessions_end(struct store_tx *tx, const char *sid, const char *user_uuid, int64_t now,
		    long *ended)
{
	struct conn *c = tx->c;
	sqlite3_stmt *s;
	long n = 0;
	int rc;

	/* The refresh rows first: they are found through the sessions. */
	s = STMT(c, sid != NULL ? S_REFRESH_REVOKE : S_USER_REFRESH_REVOKE);
	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, sid != NULL ? sid : user_uuid);
	sqlite3_bind_int64(s, 2, now);
	rc = store_db_exec(c, s, "sessions refresh revoke");
	if (rc != 0)
		return rc;
	s = STMT(c, sid != NULL ? S_SESSION_END : S_USER_SESSIONS_END);
	if (s == NULL)
		return TOKEND_EDB;
	if (sid != NULL) {
		store_db_bind_text(s, 1, sid);
		store_db_bind_text(s, 2, user_uuid);
		sqlite3_bind_int64(s, 3, now);
	} else {
		store_db_bind_text(s, 1, user_uuid);
		sqlite3_bind_int64(s, 2, now);
	}
	rc = store_db_exec(c, s, "sessions end");
	if (rc == 0)
		n = (long)sqlite3_changes(c->db);
	if (ended != NULL)
		*ended = rc == 0 ? n : 0;
	return rc;
}

int sq_session_ends_since(struct store_db *db, int64_t after, store_session_end_fn fn, void *arg)
{
	struct conn *c = store_db_conn(db);
	sqlite3_stmt *s = c ? STMT(c, S_SESSION_ENDS_SINCE) : NULL;
	char sid[UUID_STR_LEN];
	int rc;

	if (s == NULL)
		return TOKEND_EDB;
	sqlite3_bind_int64(s, 1, after);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		store_db_copy_col(s, 1, sid, sizeof(sid));
		if (fn(sqlite3_column_int64(s, 0), sid, sqlite3_column_int64(s, 2), arg) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	store_db_done(s);
	return rc == SQLITE_DONE ? 0 : store_db_error(c, "session ends");
}
