/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the failure-throttle table: a fixed-size,
 * thread-safe count of failures per key (login: per (username, client) and
 * per username), allocated whole at start-up so that no flood of new keys
 * can grow it. It knows nothing of HTTP; the caller passes the clock.
 *
 * Window: fixed, per entry. A key's window opens at its first counted
 * failure and lasts `window` seconds (to the second); while `limit`
 * failures are counted in it, throttle_admit() refuses, and Retry-After is
 * the time left in the window. A refused attempt counts nothing and does
 * not extend the window. Across the end of one window and the start of the
 * next, a key can see up to 2 x limit failures in `window` seconds; on
 * average never more than limit per window.
 *
 * Attempts in flight: an admitted attempt is pending until the caller
 * settles it (throttle_fail, throttle_forgive or throttle_clear), and
 * failures plus pending attempts never exceed limit: a burst of parallel
 * attempts cannot all pass the check before the first of them fails. An
 * attempt refused only because others are pending gets Retry-After 1.
 *
 * Layout and eviction: 8-way set-associative. A key lives in one set of 8
 * entries chosen by its keyed hash; a new key takes a free or expired entry
 * of its set, else evicts the entry with the fewest failures and pending
 * attempts in its current window (ties: the oldest window). So a flood of
 * new keys evicts only entries with no more failures than the new key's
 * 1, and a hot entry
 * (many recent failures) is evicted only once its 7 set-mates each hold at
 * least as many: the attacker would have to spend that many failures on
 * every set, which it cannot aim (the hash key is secret, per process).
 *
 * Keys are SipHash-2-4 with a random 128-bit key drawn per table at
 * creation, over an unambiguous encoding of the key's parts (lengths
 * first); only the 64-bit hash is stored, never the username. Two keys
 * whose hashes collide share an entry (probability about n^2 / 2^65).
 *
 * Concurrency: each set is guarded by one of a fixed number of striped
 * mutexes; every operation is exact under it (no lost counts).
 */
#ifndef TOKEND_THROTTLE_H
#define TOKEND_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

struct throttle; /* opaque */

/* Entries per set (the associativity). */
#define THROTTLE_WAYS 8

/* The largest limit a table can count (per-entry counter width). */
#define THROTTLE_LIMIT_MAX 65535

/* The longest window, in seconds. */
#define THROTTLE_WINDOW_MAX (30L * 86400)

enum throttle_outcome {
	THROTTLE_ADMITTED,      /* pending: the caller must settle it */
	THROTTLE_REFUSED,       /* over the limit (or full of pending); nothing counted */
	THROTTLE_REFUSED_FIRST, /* at the limit of failures, the first refusal of the window */
};

/*
 * Allocates a table of at least entries entries (rounded up to whole sets)
 * counting up to limit failures per window seconds, with a fresh random
 * hash key. Every page of it is written here, so its resident size does not
 * change afterwards. NULL when entries < THROTTLE_WAYS, limit is not in
 * [1, THROTTLE_LIMIT_MAX], window not in [1, THROTTLE_WINDOW_MAX], or
 * memory or randomness fails.
 */
struct throttle *throttle_new(size_t entries, long limit, long window);

/* Frees the table (NULL is fine) and clears *t. */
void throttle_free(struct throttle **t);

/*
 * The table's key of the parts a (alen bytes) and b (blen bytes): e.g. the
 * username and the client address. a and b may hold any bytes, and any
 * length (hashed, not stored). Distinct (a, b) pairs give distinct inputs
 * to the hash even when their concatenations agree. Never 0.
 */
uint64_t throttle_key(const struct throttle *t, const void *a, size_t alen, const void *b,
		      size_t blen);

/*
 * One attempt of key at time now (seconds, any clock that does not jump
 * back): if the failures counted in the key's current window plus its
 * pending attempts are fewer than limit, makes it pending and returns
 * THROTTLE_ADMITTED; the caller must settle it with exactly one of
 * throttle_fail, throttle_forgive or throttle_clear. Otherwise counts
 * nothing, sets *retry_after to the seconds until the window ends (1 when
 * only pending attempts fill the limit; at least 1) and refuses. A NULL
 * table (throttling off) admits everything.
 */
enum throttle_outcome throttle_admit(struct throttle *t, uint64_t key, int64_t now,
				     long *retry_after);

/*
 * Settles an admitted attempt of key as a failure: counts it in the key's
 * window (opening one if the key has none any more: evicted, or its window
 * ended while the attempt was pending). NULL table: nothing.
 */
void throttle_fail(struct throttle *t, uint64_t key, int64_t now);

/*
 * Settles an admitted attempt of key as no failure (it succeeded, or was
 * never tried). NULL table, or the key gone meanwhile: nothing.
 */
void throttle_forgive(struct throttle *t, uint64_t key, int64_t now);

/*
 * Forgets key altogether: its failures and pending attempts (e.g. a success
 * from that client; attempts still pending then settle as if new). Settles
 * the caller's own admitted attempt too. NULL table: nothing.
 */
void throttle_clear(struct throttle *t, uint64_t key);

/* The failures counted for key in its window at now; 0 when none. */
long throttle_count(struct throttle *t, uint64_t key, int64_t now);

/* Bytes the table holds (entries and locks), for measurements and logs. */
size_t throttle_bytes(const struct throttle *t);

#endif
