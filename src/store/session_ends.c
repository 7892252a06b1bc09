/* SPDX-License-Identifier: MIT */
/*
 * This module implements verify's check of an access token's session
 * (store_session_ended, store_sessions_watch) for every backend. A server
 * whose database only this host writes (SQLite) keeps the sessions that
 * ended lately in memory (session_cache.c's set) and follows the
 * session_ends log that the schema's triggers keep: it reloads when the
 * counter beside the database moved (every process bumps it after a commit
 * that may end a session) and at least every second anyway, for writers
 * outside tokend. A database that several hosts share (PostgreSQL) has no
 * such counter: there every check is one lookup, so that a logout on one
 * instance fails verification on every other at once, by the database alone.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/session_cache.h"
#include "store/handle.h"
#include "tokend/err.h"

#define ENDS_RELOAD_MS 1000 /* the window for a writer that does not bump */
#define ENDS_PRUNE_EVERY 60 /* seconds between prunes of the set */
#define ENDS_BATCH 256      /* rows added to the set per write lock */

/* CLOCK_MONOTONIC_COARSE in milliseconds: a vDSO read, no system call. */
static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int store_ends_open(struct store *st)
{
	pthread_mutex_init(&st->ends_lock, NULL);
	if (!st->be->single_host)
		return 0;
	st->ends_counter = session_counter_open(st->be->local_path(st->db));
	return st->ends_counter != NULL ? 0 : TOKEND_ENOMEM;
}

void store_ends_close(struct store *st)
{
	session_set_free(&st->ends);
	session_counter_close(&st->ends_counter);
	pthread_mutex_destroy(&st->ends_lock);
}

void store_ends_bump(struct store *st)
{
	if (st->ends_counter != NULL)
		session_counter_bump(st->ends_counter);
}

/* A reload's batch of rows on their way into the set. */
struct reload {
	struct store *st;
	struct session_end batch[ENDS_BATCH];
	size_t n;
	int64_t seq;    /* the highest seq read */
	int64_t oldest; /* ends before this are past the horizon */
	int rc;
};

static int reload_row(int64_t seq, const char *sid, int64_t ended_at, void *arg)
{
	struct reload *r = arg;

	r->seq = seq;
	/* Past the horizon, or not a uuid (store_session_ended looks those up). */
	if (ended_at < r->oldest || !session_id_parse(sid, r->batch[r->n].id))
		return 0;
	r->batch[r->n].ended_at = ended_at;
	if (++r->n == ENDS_BATCH) {
		r->rc = session_set_add(r->st->ends, r->batch, r->n);
		r->n = 0;
	}
	return r->rc;
}

/*
 * Loads the session ends committed since the last load into the set, under
 * ends_lock. The counter is read before the query: a commit bumped after
 * that read moves it again and the next lookup reloads. (SQLite's writers
 * take seq in commit order, so rows after the last seq seen are exactly
 * the ends not yet loaded.)
 */
static int ends_reload(struct store *st, uint64_t counter)
{
	struct reload *r = calloc(1, sizeof(*r));
	int64_t started = mono_ms(), now = util_now();
	int rc;

	if (r == NULL)
		return TOKEND_ENOMEM;
	r->st = st;
	r->seq = st->ends_seq;
	r->oldest = now - st->ends_horizon;
	rc = st->be->session_ends_since(st->db, st->ends_seq, reload_row, r);
	if (rc == 0)
		rc = r->rc;
	if (rc == 0 && r->n > 0)
		rc = session_set_add(st->ends, r->batch, r->n);
	if (rc == 0) {
		st->ends_seq = r->seq;
		atomic_store(&st->ends_seen, counter);
		atomic_store(&st->ends_loaded_ms, started);
	}
	if (rc == 0 && now - st->ends_pruned_at >= ENDS_PRUNE_EVERY) {
		(void)session_set_prune(st->ends, now - st->ends_horizon);
		st->ends_pruned_at = now;
	}
	free(r);
	return rc;
}

int store_sessions_watch(struct store *st, long horizon)
{
	int rc;

	if (st->ends_counter == NULL)
		return 0; /* several hosts write: every check is a lookup */
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

/*
 * *ended = session id is among the ends in memory (st->ends, set once
 * before the server's threads start), reloaded first as
 * store_session_ended says.
 */
static int ends_check(struct store *st, const unsigned char id[SESSION_ID_LEN], bool *ended)
{
	uint64_t counter;
	int rc = 0;

	*ended = true;
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

int store_session_ended(struct store *st, const char *sid, bool *ended)
{
	unsigned char id[SESSION_ID_LEN];

	*ended = true; /* fail closed */
	/* Not watched, or not a lower-case uuid: looked up. */
	if (st->ends == NULL || !session_id_parse(sid, id))
		return st->be->session_ended(st->db, sid, ended);
	return ends_check(st, id, ended);
}

/*
 * The memo: direct-mapped by session id, per thread (no lock). A session
 * enters it only from a lookup that found it live for that user (the user
 * active and there), and leaves it by ending, which puts it among the ends
 * that every hit checks first: logout, passwd, disable and delete all end
 * the sessions (each backend's 005 triggers). A miss costs the lookup, as
 * without the memo. 256 slots: 16 KiB per thread that authenticates.
 */
#define LIVE_SLOTS 256

struct live_slot {
	uint64_t store_id; /* 0: empty (store ids start at 1) */
	unsigned char id[SESSION_ID_LEN];
	char user[UUID_STR_LEN];
};

static _Thread_local struct live_slot live_slots[LIVE_SLOTS];

static struct live_slot *live_slot(const unsigned char id[SESSION_ID_LEN])
{
	/* Session ids are random uuids: their bytes are already a hash. */
	return &live_slots[((unsigned)id[0] | (unsigned)id[1] << 8) % LIVE_SLOTS];
}

int store_ends_live_known(struct store *st, const char *sid, const char *user_uuid)
{
	unsigned char id[SESSION_ID_LEN];
	struct live_slot *s;
	bool ended = true;
	int rc;

	if (st->ends == NULL || !session_id_parse(sid, id))
		return TOKEND_ENOTFOUND;
	s = live_slot(id);
	if (s->store_id != st->id || memcmp(s->id, id, SESSION_ID_LEN) != 0 ||
	    strcmp(s->user, user_uuid) != 0)
		return TOKEND_ENOTFOUND;
	rc = ends_check(st, id, &ended);
	if (rc != 0)
		return rc;
	if (ended) {
		s->store_id = 0;
		return TOKEND_ENOTFOUND;
	}
	return 0;
}

void store_ends_live_remember(struct store *st, const char *sid, const char *user_uuid)
{
	unsigned char id[SESSION_ID_LEN];
	struct live_slot *s;

	if (st->ends == NULL || !session_id_parse(sid, id) || strlen(user_uuid) >= UUID_STR_LEN)
		return;
	s = live_slot(id);
	s->store_id = st->id;
	memcpy(s->id, id, SESSION_ID_LEN);
	memcpy(s->user, user_uuid, strlen(user_uuid) + 1);
}
