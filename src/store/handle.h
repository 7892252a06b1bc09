/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/store/'s backend-neutral half: the store
 * handle that store.c (the rules) and session_ends.c (verify's view of
 * ended sessions) share. Backends never see it.
 */
#ifndef TOKEND_STORE_HANDLE_H
#define TOKEND_STORE_HANDLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>

#include "store/backend.h"

struct session_counter;
struct session_set;

struct store {
	const struct store_backend *be;
	struct store_db *db;
	/*
	 * Session ends (session_ends.c). The counter, beside a database of
	 * this host only (be->single_host), is bumped after every commit
	 * that may end a session, by every process; the set is there only
	 * once store_sessions_watch ran.
	 */
	struct session_counter *ends_counter; /* NULL: several hosts write */
	struct session_set *ends;             /* NULL: look sessions up */
	long ends_horizon;
	pthread_mutex_t ends_lock;      /* one reload at a time; guards below */
	int64_t ends_seq;               /* the last session_ends.seq loaded */
	int64_t ends_pruned_at;         /* wall clock, seconds */
	_Atomic uint64_t ends_seen;     /* the counter before the last load */
	_Atomic int64_t ends_loaded_ms; /* CLOCK_MONOTONIC_COARSE of that load */
	uint64_t id;                    /* unique in the process: keys the memo of live sessions */
};

/* Opens the counter (when the backend is single-host); TOKEND_ENOMEM. */
int store_ends_open(struct store *st);

/* Frees what store_ends_open and store_sessions_watch made; accepts none. */
void store_ends_close(struct store *st);

/*
 * Bearer authentication's memo of sessions a lookup found live
 * (store_session_state), per thread. store_ends_live_known: sid of
 * user_uuid was found live by this thread and has not ended since, by the
 * ends in memory (so only with store_sessions_watch); TOKEND_ENOTFOUND
 * when it cannot say so, TOKEND_EDB from a reload of the ends.
 */
int store_ends_live_known(struct store *st, const char *sid, const char *user_uuid);
void store_ends_live_remember(struct store *st, const char *sid, const char *user_uuid);

/*
 * The memo of listing versions (listing_memo.c), per thread: _get gives
 * what store_api_token_version found for (team, user) if the backend's
 * commit mark is still the one read before that lookup, and the lookup is
 * under a second old; _put keeps a lookup's result with that mark.
 */
bool store_listing_memo_get(struct store *st, const char *team, const char *user, bool *member,
			    int64_t *version);
void store_listing_memo_put(struct store *st, const char *team, const char *user,
			    const struct store_commit_mark *mark, bool member, int64_t version);

/* After a commit that may have ended a session: other processes reload. */
void store_ends_bump(struct store *st);

/*
 * Ends transaction tx (as be->write_end) whose rows may have ended a
 * session: after the COMMIT, other processes' verify sees it at once
 * (store.c).
 */
int store_end_sessions_commit(struct store *st, struct store_tx *tx, int rc);

#endif
