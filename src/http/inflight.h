/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the per-client in-flight counter, private
 * to src/http/: how many requests of one client address are between their
 * first handler call and their completion, behind a proxy too (the client
 * is the forwarded one), against server.per_client_requests.
 *
 * No lock and no allocation per request: two fixed arrays of atomic
 * counters, each indexed by a differently seeded hash of the address (a
 * count-min sketch). A client's requests are counted in both of its
 * counters, so neither is below its true count: a client over the limit
 * is always refused. A client under it is refused only if both of its
 * counters are shared with others whose requests fill them (with
 * INFLIGHT_SLOTS counters each, that needs many busy clients at once); it
 * can never be let past the limit. The seeds are random per process, so
 * which addresses share counters cannot be worked out from outside.
 */
#ifndef TOKEND_HTTP_INFLIGHT_H
#define TOKEND_HTTP_INFLIGHT_H

#include <stdbool.h>
#include <stdint.h>

#define INFLIGHT_SLOTS 16384 /* per array (64 KiB); a power of two */

struct inflight; /* opaque */

/* What inflight_enter() counted, for inflight_leave(). */
struct inflight_ticket {
	uint16_t a, b;
	bool held;
};

/* A counter table for limit requests per client (0 = no limit: nothing is
 * counted). NULL when out of memory or without randomness. */
struct inflight *inflight_new(long limit);

/*
 * Counts one request of client (an address text) and fills t. Returns
 * false when the client now has more than the limit in flight (the request
 * is counted all the same: it holds a connection until it is answered).
 */
bool inflight_enter(struct inflight *in, const char *client, struct inflight_ticket *t);

/* Uncounts what t holds (nothing when it holds nothing); clears t. */
void inflight_leave(struct inflight *in, struct inflight_ticket *t);

/* The lower of the client's two counters: its in-flight count, or more. */
unsigned inflight_count(struct inflight *in, const char *client);

/* Frees the table (accepts NULL) and clears *in. */
void inflight_free(struct inflight **in);

#endif
