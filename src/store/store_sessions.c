/* SPDX-License-Identifier: MIT */
/*
 * This module implements the sessions of store.h on SQLite: a session is one
 * login (its refresh family, the tokens' "sid" claim). It answers whether a
 * session is live (verify and Bearer authentication ask for every access
 * token), and ends sessions: one (logout), all of a user's (`user passwd`,
 * `user disable`), each together with the session's refresh rows and in the
 * same transaction as the change that calls for it. A user's active flag is
 * set here too, so that no path disables a user and leaves a session live.
 * And it answers whether a session has ended for verify: from the ends kept
 * in memory (session_cache.c), reloaded from session_ends when the shared
 * counter moved or a second passed, or by a lookup when the server does not
 * watch them.
 */
#include <string.h>
#include <time.h>

#include "store/session_cache.h"
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

	c->ends_session = true; /* store_db_end bumps the counter if it commits */
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
	/* The sessions first, at now: then the trigger of sql/005 that ends a
	 * disabled user's sessions (for other writers) finds none live. */
	rc = store_db_sessions_end(c, NULL, uuid, now, NULL);
	if (rc == 0) {
		store_db_bind_text(s, 1, uuid);
		rc = store_db_exec(c, s, "user disable");
	}
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

/* CLOCK_MONOTONIC_COARSE in milliseconds: a vDSO read, no system call. */
static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define ENDS_RELOAD_MS 1000 /* the window for a writer that does not bump */
#define ENDS_PRUNE_EVERY 60 /* seconds between prunes of the set */
#define ENDS_BATCH 256      /* rows added to the set per write lock */

/*
 * Loads the session ends committed since the last load into the set, under
 * ends_lock, on the reload connection (never in a read snapshot a caller
 * holds). The counter is read before the query: a commit bumped after
 * that read moves it again and the next lookup reloads.
 */
static int ends_reload(struct store *st, uint64_t counter)
{
	struct session_end batch[ENDS_BATCH];
	int64_t started = mono_ms(), now = util_now(), max = 0, seq = st->ends_seq;
	struct conn *c = st->ends_conn;
	sqlite3_stmt *s;
	size_t n = 0;
	int rc = 0, step;

	if (c == NULL) {
		c = st->ends_conn = store_db_conn_own(st);
		if (c == NULL)
			return TOKEND_EDB;
	}
	s = store_db_stmt(c, S_READ_BEGIN);
	if (s == NULL || store_db_exec(c, s, "session ends begin") != 0)
		return TOKEND_EDB;
	s = store_db_stmt(c, S_ENDS_MAX);
	if (s == NULL) {
		rc = TOKEND_EDB;
		goto out;
	}
	step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		max = sqlite3_column_int64(s, 0);
	store_db_done(s);
	if (step != SQLITE_ROW) {
		rc = store_db_error(c, "session ends max");
		goto out;
	}
	s = max > seq ? store_db_stmt(c, S_ENDS_SINCE) : NULL;
	if (max > seq && s == NULL) {
		rc = TOKEND_EDB;
		goto out;
	}
	if (s != NULL) {
		sqlite3_bind_int64(s, 1, seq);
		sqlite3_bind_int64(s, 2, max);
		sqlite3_bind_int64(s, 3, now - st->ends_horizon);
		while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
			const char *sid = (const char *)sqlite3_column_text(s, 1);

			/* Not a uuid: store_session_ended looks it up instead. */
			if (sid == NULL || !session_id_parse(sid, batch[n].id))
				continue;
			batch[n].ended_at = sqlite3_column_int64(s, 2);
			if (++n == ENDS_BATCH) {
				rc = session_set_add(st->ends, batch, n);
				n = 0;
			}
		}
		store_db_done(s);
		if (rc == 0 && step != SQLITE_DONE)
			rc = store_db_error(c, "session ends");
		if (rc == 0 && n > 0)
			rc = session_set_add(st->ends, batch, n);
	}
	if (rc == 0) {
		st->ends_seq = max;
		atomic_store(&st->ends_seen, counter);
		atomic_store(&st->ends_loaded_ms, started);
	}
	if (rc == 0 && now - st->ends_pruned_at >= ENDS_PRUNE_EVERY) {
		(void)session_set_prune(st->ends, now - st->ends_horizon);
		st->ends_pruned_at = now;
	}
out:
	s = store_db_stmt(c, S_COMMIT);
	if (s == NULL || store_db_exec(c, s, "session ends end") != 0) {
		s = store_db_stmt(c, S_ROLLBACK);
		if (s != NULL)
			(void)store_db_exec(c, s, "session ends rollback");
	}
	return rc;
}

int store_sessions_watch(struct store *st, long horizon)
{
	int rc;

	pthread_mutex_lock(&st->ends_lock);
	if (st->ends != NULL) {
		pthread_mutex_unlock(&st->ends_lock);
		return 0;
	}
	st->ends = session_set_new();
	if (st->ends == NULL) {
		pthread_mutex_unlock(&st->ends_lock);
		return TOKEND_ENOMEM;
	}
	st->ends_horizon = horizon;
	st->ends_seq = 0;
	st->ends_pruned_at = util_now();
	rc = ends_reload(st, session_counter_get(st->ends_counter));
	if (rc != 0)
		session_set_free(&st->ends);
	pthread_mutex_unlock(&st->ends_lock);
	return rc;
}

/* Without the cache: one lookup; no row or ended is ended (fail closed). */
static int ended_lookup(struct store *st, const char *sid, bool *ended)
{
	struct conn *c = store_db_conn(st);
	sqlite3_stmt *s = c ? store_db_stmt(c, S_SESSION_ENDED) : NULL;
	int rc;

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

int store_session_ended(struct store *st, const char *sid, bool *ended)
{
	unsigned char id[SESSION_ID_LEN];
	uint64_t counter;
	int rc = 0;

	*ended = true;
	/* st->ends is set once, before the server's threads start. */
	if (st->ends == NULL || !session_id_parse(sid, id))
		return ended_lookup(st, sid, ended);
	counter = session_counter_get(st->ends_counter);
	if (counter != atomic_load(&st->ends_seen)) {
		/* Another writer ended a session: wait for the reload. */
		pthread_mutex_lock(&st->ends_lock);
		counter = session_counter_get(st->ends_counter);
		if (counter != atomic_load(&st->ends_seen))
			rc = ends_reload(st, counter);
		pthread_mutex_unlock(&st->ends_lock);
	} else if (mono_ms() - atomic_load(&st->ends_loaded_ms) >= ENDS_RELOAD_MS &&
		   pthread_mutex_trylock(&st->ends_lock) == 0) {
		/* The periodic reload, for writers that do not bump: one thread
		 * runs it; the others answer from the set meanwhile. */
		if (mono_ms() - atomic_load(&st->ends_loaded_ms) >= ENDS_RELOAD_MS)
			rc = ends_reload(st, session_counter_get(st->ends_counter));
		pthread_mutex_unlock(&st->ends_lock);
	}
	if (rc != 0)
		return rc;
	*ended = session_set_has(st->ends, id);
	return 0;
}
