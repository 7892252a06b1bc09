/* SPDX-License-Identifier: MIT */
/*
 * This module implements the sessions of store.h on SQLite: a session is one
 * login (its refresh family, the tokens' "sid" claim). It answers whether a
 * session is live (verify and Bearer authentication ask for every access
 * token), and ends sessions: one (logout), all of a user's (`user passwd`,
 * `user disable`), each together with the session's refresh rows and in the
 * same transaction as the change that calls for it. A user's active flag is
 * set here too, so that no path disables a user and leaves a session live.
 */
#include <string.h>

#include "store/sqlite_internal.h"
#include "tokend/err.h"

int store_session_state(struct store *st, const char *sid, const char *user_uuid,
			enum store_session *state)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_SESSION_STATE) : NULL;
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

int store_db_sessions_end(struct conn *c, const char *sid, const char *user_uuid, int64_t now,
			  long *ended)
{
	sqlite3_stmt *s;
	long n = 0;
	int rc;

	/* The refresh rows first: they are found through the sessions. */
	if (sid != NULL) {
		s = store_db_stmt(c, S_REFRESH_REVOKE);
		if (s == NULL)
			return TOKEND_EDB;
		store_db_bind_text(s, 1, sid);
		sqlite3_bind_int64(s, 2, now);
	} else {
		s = store_db_stmt(c, S_USER_REFRESH_REVOKE);
		if (s == NULL)
			return TOKEND_EDB;
		store_db_bind_text(s, 1, user_uuid);
		sqlite3_bind_int64(s, 2, now);
	}
	rc = store_db_exec(c, s, "sessions refresh revoke");
	if (rc != 0)
		return rc;
	s = store_db_stmt(c, sid != NULL ? S_SESSION_END : S_USER_SESSIONS_END);
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

int store_session_end(struct store *st, const char *sid, const char *user_uuid, int64_t now,
		      bool *ended)
{
	struct conn *c = NULL;
	long n = 0;
	int rc;

	*ended = false;
	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	rc = store_db_sessions_end(c, sid, user_uuid, now, &n);
	/* Another user's sid ends nothing, and must revoke nothing either. */
	if (rc == 0 && n == 0)
		rc = TOKEND_ENOTFOUND;
	rc = store_db_end(c, rc);
	if (rc == TOKEND_ENOTFOUND)
		return 0;
	*ended = rc == 0;
	return rc;
}

int store_user_sessions_end(struct store *st, const char *user_uuid, int64_t now, long *ended)
{
	struct conn *c = NULL;
	int rc;

	if (ended != NULL)
		*ended = 0;
	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	rc = store_db_sessions_end(c, NULL, user_uuid, now, ended);
	rc = store_db_end(c, rc);
	if (rc != 0 && ended != NULL)
		*ended = 0;
	return rc;
}

int store_user_set_active(struct store *st, const char *username, bool active)
{
	struct conn *c;
	sqlite3_stmt *s;

	if (!active) /* never without ending the sessions */
		return store_user_disable(st, username, util_now(), false);
	c = store_db_conn(st);
	s = c ? store_db_stmt(c, S_USER_SET_ACTIVE) : NULL;
	if (s == NULL)
		return TOKEND_EDB;
	store_db_bind_text(s, 1, username);
	sqlite3_bind_int(s, 2, active ? 1 : 0);
	return store_db_exec_changes(c, s, "user set active");
}

int store_user_disable(struct store *st, const char *username, int64_t now,
		       bool delete_api_tokens)
{
	struct conn *c = NULL;
	char uuid[UUID_STR_LEN];
	sqlite3_stmt *s;
	int rc;

	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	rc = store_db_user_uuid(c, username, uuid);
	if (rc != 0)
		goto out;
	s = store_db_stmt(c, S_USER_DISABLE);
	if (s == NULL) {
		rc = TOKEND_EDB;
		goto out;
	}
	store_db_bind_text(s, 1, uuid);
	rc = store_db_exec(c, s, "user disable");
	if (rc == 0)
		rc = store_db_sessions_end(c, NULL, uuid, now, NULL);
	if (rc == 0 && delete_api_tokens) {
		s = store_db_stmt(c, S_API_DELETE_USER);
		if (s == NULL) {
			rc = TOKEND_EDB;
			goto out;
		}
		store_db_bind_text(s, 1, uuid);
		rc = store_db_exec(c, s, "user tokens delete");
	}
out:
	return store_db_end(c, rc);
}

int store_user_change_password(struct store *st, const char *uuid, const char *hash,
			       int64_t now)
{
	struct conn *c = NULL;
	sqlite3_stmt *s;
	int rc;

	rc = store_db_begin(st, &c);
	if (rc != 0)
		return rc;
	s = store_db_stmt(c, S_USER_SET_PW);
	if (s == NULL) {
		rc = TOKEND_EDB;
		goto out;
	}
	store_db_bind_text(s, 1, uuid);
	store_db_bind_text(s, 2, hash);
	rc = store_db_exec_changes(c, s, "user passwd");
	if (rc == 0)
		rc = store_db_sessions_end(c, NULL, uuid, now, NULL);
out:
	return store_db_end(c, rc);
}
