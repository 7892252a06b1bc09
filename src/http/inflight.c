/* SPDX-License-Identifier: MIT */
/*
 * This module implements the per-client in-flight counter (contract in
 * inflight.h): two arrays of atomic counters indexed by seeded FNV-1a
 * hashes of the client address text, relaxed increments and decrements.
 */
#include "http/inflight.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/util.h"

struct inflight {
	long limit;
	uint64_t seed[2];
	atomic_uint c[2][INFLIGHT_SLOTS];
};

struct inflight *inflight_new(long limit)
{
	struct inflight *in = calloc(1, sizeof(*in));

	if (in == NULL)
		return NULL;
	in->limit = limit;
	if (util_random(in->seed, sizeof(in->seed)) != 0) {
		free(in);
		return NULL;
	}
	return in;
}

static uint16_t slot_of(uint64_t seed, const char *s)
{
	uint64_t h = 0xcbf29ce484222325u ^ seed;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3u;
	}
	h ^= h >> 29; /* the low bits of FNV-1a mix the last bytes weakly */
	h *= 0xbf58476d1ce4e5b9u;
	h ^= h >> 32;
	return (uint16_t)(h & (INFLIGHT_SLOTS - 1));
}

bool inflight_enter(struct inflight *in, const char *client, struct inflight_ticket *t)
{
	unsigned na, nb;

	memset(t, 0, sizeof(*t));
	if (in == NULL || in->limit <= 0)
		return true;
	t->a = slot_of(in->seed[0], client);
	t->b = slot_of(in->seed[1], client);
	t->held = true;
	na = atomic_fetch_add_explicit(&in->c[0][t->a], 1, memory_order_relaxed) + 1;
	nb = atomic_fetch_add_explicit(&in->c[1][t->b], 1, memory_order_relaxed) + 1;
	return (long)(na < nb ? na : nb) <= in->limit;
}

void inflight_leave(struct inflight *in, struct inflight_ticket *t)
{
	if (in == NULL || !t->held)
		return;
	atomic_fetch_sub_explicit(&in->c[0][t->a], 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&in->c[1][t->b], 1, memory_order_relaxed);
	t->held = false;
}

unsigned inflight_count(struct inflight *in, const char *client)
{
	unsigned na, nb;

	if (in == NULL)
		return 0;
	na = atomic_load_explicit(&in->c[0][slot_of(in->seed[0], client)], memory_order_relaxed);
	nb = atomic_load_explicit(&in->c[1][slot_of(in->seed[1], client)], memory_order_relaxed);
	return na < nb ? na : nb;
}

void inflight_free(struct inflight **in)
{
	if (in == NULL || *in == NULL)
		return;
	free(*in);
	*in = NULL;
}
