/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/store/: the backend-neutral half of the
 * session-end cache that lets verify check an access token's session
 * without a database lookup (docs/tokens.md, "How verify checks a
 * session"). Two parts:
 * - session_set: the ids of sessions that ended lately, each with the time
 *   it ended; a hash set under a rwlock, so lookups run side by side;
 * - session_counter: a 64-bit count of committed transactions that may have
 *   ended a session, shared by every process that opens the same database
 *   (a small file mmap'd beside it); a reader that sees it move reloads.
 * The backend fills the set from its session_ends rows and bumps the
 * counter after each such commit.
 */
#ifndef TOKEND_STORE_SESSION_CACHE_H
#define TOKEND_STORE_SESSION_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SESSION_ID_LEN 16

/*
 * Parses a session id in the canonical lower-case uuid form (36 chars,
 * dashes at 8, 13, 18, 23) into out; false for anything else.
 */
bool session_id_parse(const char *sid, unsigned char out[SESSION_ID_LEN]);

struct session_set;

/* An empty set; NULL when out of memory. Free with session_set_free. */
struct session_set *session_set_new(void);

/* Frees the set; clears *set; accepts NULL. */
void session_set_free(struct session_set **set);

struct session_end {
	unsigned char id[SESSION_ID_LEN];
	int64_t ended_at;
};

/*
 * Adds n ends under the write lock (an id already there keeps the later
 * ended_at). 0 or TOKEND_ENOMEM (then some may be missing: the caller must
 * not trust the set).
 */
int session_set_add(struct session_set *set, const struct session_end *ends, size_t n);

/* Whether id is in the set (under the read lock). */
bool session_set_has(struct session_set *set, const unsigned char id[SESSION_ID_LEN]);

/* Drops the ends with ended_at < before; returns how many are left. */
size_t session_set_prune(struct session_set *set, int64_t before);

/* How many ends the set holds. */
size_t session_set_count(struct session_set *set);

struct session_counter;

/*
 * The counter of database db_path: the file "<db_path>-ends" (mode 0600,
 * created if missing) mapped shared, so that every process opening that
 * database sees one counter. For ":memory:" or "", or when the file cannot
 * be opened or mapped (logged once per process), a private one: then other
 * processes' changes are seen only by the readers' periodic reload.
 * NULL only when out of memory. Free with session_counter_close.
 */
struct session_counter *session_counter_open(const char *db_path);

/* Unmaps; clears *c; accepts NULL. */
void session_counter_close(struct session_counter **c);

/* The current value (acquire). */
uint64_t session_counter_get(const struct session_counter *c);

/* Adds one (after a commit that may have ended a session). */
void session_counter_bump(struct session_counter *c);

/* Whether the counter is shared through the file. */
bool session_counter_shared(const struct session_counter *c);

#endif
