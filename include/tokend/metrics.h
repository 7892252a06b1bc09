/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the metrics module: the counters, gauges
 * and request histogram that GET /metrics exposes, and the writer of the
 * Prometheus text format (version 0.0.4). Counting never takes a lock that
 * another thread contends for: each thread counts into its own block
 * (registered once, at the thread's first count); a scrape sums the blocks.
 * With metrics disabled (metrics_setup(false, ...)) every count returns at
 * once. It knows nothing of HTTP or SQL: routes are indexes into the names
 * given to metrics_setup().
 */
#ifndef TOKEND_METRICS_H
#define TOKEND_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_ROUTES_MAX 24 /* route names metrics_setup() accepts, "unmatched" apart */

enum metrics_login {
	METRICS_LOGIN_SUCCESS,
	METRICS_LOGIN_FAILURE,    /* wrong username or password, inactive user */
	METRICS_LOGIN_THROTTLED,  /* refused by the login throttle (429) */
	METRICS_LOGIN_QUEUE_FULL, /* the hash queue was full or its deadline passed (503) */
	METRICS_LOGIN_N
};

enum metrics_refresh {
	METRICS_REFRESH_ROTATED,
	METRICS_REFRESH_REPLAYED, /* within the grace window: the same pair again */
	METRICS_REFRESH_REUSED,   /* reuse detected: the family revoked */
	METRICS_REFRESH_ENDED,    /* its session had ended */
	METRICS_REFRESH_N
};

/* Why the key directory was looked at (tokend/keys.h's reload triggers). */
enum metrics_key_check {
	METRICS_KEY_SIGNAL,
	METRICS_KEY_POLL,
	METRICS_KEY_UNKNOWN_KID,
	METRICS_KEY_CHECK_N
};

/* What the process reads at scrape time (no cost between scrapes). */
struct metrics_gauges {
	long hash_queue; /* logins waiting for a hashing thread */
	long hash_busy;  /* hashing threads at work */
	long open_connections;
};
typedef void (*metrics_gauge_fn)(void *arg, struct metrics_gauges *g);

/*
 * Turns counting on or off and names the routes (routes[i] labels route
 * index i; index n is "unmatched"). Call before the threads that count
 * start; not thread-safe against counting. At most METRICS_ROUTES_MAX names
 * are kept (later indexes count as "unmatched").
 */
void metrics_setup(bool enabled, const char *const *routes, size_t n);

/* True when counting is on. */
bool metrics_enabled(void);

/*
 * Counts one answered request of route index route (any index >= the
 * number of names counts as "unmatched"), its status and duration.
 */
void metrics_request(size_t route, unsigned status, uint64_t duration_us);

/* Counts one login outcome. */
void metrics_login(enum metrics_login outcome);

/* Counts one refresh outcome. */
void metrics_refresh(enum metrics_refresh outcome);

/* Counts API tokens issued (n of them) and deleted. */
void metrics_api_tokens_issued(long n);
void metrics_api_tokens_deleted(long n);

/*
 * Counts one look at the key directory (a fingerprint or a full read) for
 * why, and whether it led to a full re-read that loaded (loaded), failed
 * (failed) or neither (the directory had not changed).
 */
void metrics_key_check(enum metrics_key_check why, bool read, bool loaded);

/* Counts one error of the store (a failed query, an unavailable database). */
void metrics_store_error(void);

/* Counts one COMMIT of a write transaction that succeeded (each backend). */
void metrics_store_commit(void);

/*
 * Sets (or, with fn NULL, clears) the source of the gauges; fn is called
 * under the module's lock during a scrape, so clearing it waits for a
 * scrape under way.
 */
void metrics_gauges_source(metrics_gauge_fn fn, void *arg);

/*
 * The exposition: every metric, in the text format. Returns a malloc'd
 * NUL-terminated string (the caller frees it), NULL when out of memory.
 */
char *metrics_render(void);

#endif
