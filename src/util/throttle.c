/* SPDX-License-Identifier: MIT */
/*
 * This module implements the failure-throttle table of tokend/throttle.h:
 * one array of 16-byte entries in sets of THROTTLE_WAYS, allocated and
 * written whole at creation, striped mutexes over the sets, SipHash-2-4
 * keys. The header states the window and the eviction policy; the
 * comments here say why each choice is safe.
 */
#include "tokend/throttle.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "tokend/util.h"

/* Mutexes striped over the sets: enough that 2 x cores threads rarely meet. */
#define STRIPES 256

#define CACHE_LINE 64

/*
 * One key's window. key 0 marks a free entry (throttle_key never returns
 * 0). start is the low 32 bits of the clock, compared modulo 2^32, so any
 * clock works and a window never exceeds THROTTLE_WINDOW_MAX < 2^31.
 */
struct entry {
	uint64_t key;
	uint32_t start;   /* the window opened at this second */
	uint16_t count;   /* failures counted in it */
	uint16_t pending; /* PENDING_MASK: admitted, not settled; REFUSED_BIT */
};

/* A refusal at the limit was reported in this window. */
#define REFUSED_BIT 0x8000u
#define PENDING_MASK 0x7fffu

struct throttle {
	uint64_t k0, k1; /* SipHash key, random per table */
	size_t nsets;
	long limit;
	long window;
	struct entry *e; /* nsets * THROTTLE_WAYS, cache-line aligned */
	pthread_mutex_t locks[STRIPES];
};

/* ---------------------------------------------------------------- SipHash-2-4 */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

struct sip {
	uint64_t v0, v1, v2, v3;
	uint64_t tail; /* bytes not yet in a whole word */
	size_t ntail;
	uint64_t total; /* bytes fed, mod 256 in the last word */
};

static inline void sip_round(struct sip *s)
{
	s->v0 += s->v1;
	s->v1 = ROTL(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = ROTL(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = ROTL(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = ROTL(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = ROTL(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = ROTL(s->v2, 32);
}

static inline void sip_word(struct sip *s, uint64_t m)
{
	s->v3 ^= m;
	sip_round(s);
	sip_round(s);
	s->v0 ^= m;
}

static void sip_init(struct sip *s, uint64_t k0, uint64_t k1)
{
	s->v0 = k0 ^ 0x736f6d6570736575ULL;
	s->v1 = k1 ^ 0x646f72616e646f6dULL;
	s->v2 = k0 ^ 0x6c7967656e657261ULL;
	s->v3 = k1 ^ 0x7465646279746573ULL;
	s->tail = 0;
	s->ntail = 0;
	s->total = 0;
}

static uint64_t load_le64(const unsigned char *p)
{
	uint64_t m = 0;

	for (int i = 7; i >= 0; i--)
		m = (m << 8) | p[i];
	return m;
}

static void sip_feed(struct sip *s, const void *data, size_t len)
{
	const unsigned char *p = data;

	s->total += len;
	while (len > 0 && s->ntail > 0) {
		s->tail |= (uint64_t)*p++ << (8 * s->ntail);
		len--;
		if (++s->ntail == 8) {
			sip_word(s, s->tail);
			s->tail = 0;
			s->ntail = 0;
		}
	}
	for (; len >= 8; p += 8, len -= 8)
		sip_word(s, load_le64(p));
	for (; len > 0; len--)
		s->tail |= (uint64_t)*p++ << (8 * s->ntail++);
}

static uint64_t sip_final(struct sip *s)
{
	sip_word(s, s->tail | (s->total << 56));
	s->v2 ^= 0xff;
	sip_round(s);
	sip_round(s);
	sip_round(s);
	sip_round(s);
	return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

/* ---------------------------------------------------------------- the table */

struct throttle *throttle_new(size_t entries, long limit, long window)
{
	struct throttle *t;
	unsigned char rnd[16];
	void *mem = NULL;
	size_t bytes;

	if (entries < THROTTLE_WAYS || entries > SIZE_MAX / 2 / sizeof(struct entry) || limit < 1 ||
	    limit > THROTTLE_LIMIT_MAX || window < 1 || window > THROTTLE_WINDOW_MAX)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	if (util_random(rnd, sizeof(rnd)) != 0)
		goto fail;
	t->k0 = load_le64(rnd);
	t->k1 = load_le64(rnd + 8);
	OPENSSL_cleanse(rnd, sizeof(rnd));
	t->nsets = (entries + THROTTLE_WAYS - 1) / THROTTLE_WAYS;
	t->limit = limit;
	t->window = window;
	bytes = t->nsets * THROTTLE_WAYS * sizeof(struct entry);
	if (posix_memalign(&mem, CACHE_LINE, bytes) != 0)
		goto fail;
	/* Written whole now (not calloc's lazy zero pages): the resident size
	 * is paid at start-up, and no flood can raise it later. */
	memset(mem, 0, bytes);
	t->e = mem;
	for (size_t i = 0; i < STRIPES; i++)
		pthread_mutex_init(&t->locks[i], NULL);
	return t;
fail:
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
	return NULL;
}

void throttle_free(struct throttle **tp)
{
	struct throttle *t = tp ? *tp : NULL;

	if (t == NULL)
		return;
	for (size_t i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&t->locks[i]);
	free(t->e);
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
	*tp = NULL;
}

uint64_t throttle_key(const struct throttle *t, const void *a, size_t alen, const void *b,
		      size_t blen)
{
	struct sip s;
	unsigned char lens[16];
	uint64_t h;

	if (t == NULL)
		return 1;
	/* Both lengths first: ("ab", "c") and ("a", "bc") hash differently. */
	for (int i = 0; i < 8; i++) {
		lens[i] = (unsigned char)((uint64_t)alen >> (8 * i));
		lens[8 + i] = (unsigned char)((uint64_t)blen >> (8 * i));
	}
	sip_init(&s, t->k0, t->k1);
	sip_feed(&s, lens, sizeof(lens));
	if (alen > 0)
		sip_feed(&s, a, alen);
	if (blen > 0)
		sip_feed(&s, b, blen);
	h = sip_final(&s);
	return h != 0 ? h : 1;
}

/* The set of key: Lemire's multiply-shift range reduction of its top bits. */
static size_t set_of(const struct throttle *t, uint64_t key)
{
	return (size_t)(((key >> 32) * (uint64_t)t->nsets) >> 32);
}

static pthread_mutex_t *lock_of(struct throttle *t, size_t set)
{
	return &t->locks[set % STRIPES];
}

/* Seconds since e's window opened (modulo 2^32: see struct entry). */
static uint32_t age(const struct entry *e, int64_t now)
{
	return (uint32_t)now - e->start;
}

static bool live(const struct throttle *t, const struct entry *e, int64_t now)
{
	return e->key != 0 && age(e, now) < (uint32_t)t->window;
}

/* Failures and pending attempts: what an eviction would forget. */
static unsigned heat(const struct entry *e)
{
	return (unsigned)e->count + (e->pending & PENDING_MASK);
}

/* key's entry in set, if its window is live; NULL otherwise. */
static struct entry *find(struct throttle *t, struct entry *set, uint64_t key, int64_t now)
{
	for (int i = 0; i < THROTTLE_WAYS; i++)
		if (set[i].key == key && live(t, &set[i], now))
			return &set[i];
	return NULL;
}

/*
 * The entry a new key takes: its own stale entry, a free or expired one,
 * else the one with the fewest failures and pending attempts (an entry with
 * neither is free), ties to the oldest window (the nearest to expiring). The victim is never hotter than every set-mate.
 */
static struct entry *victim(struct throttle *t, struct entry *set, uint64_t key, int64_t now)
{
	struct entry *best = NULL;

	for (int i = 0; i < THROTTLE_WAYS; i++)
		if (set[i].key == key)
			return &set[i];
	for (int i = 0; i < THROTTLE_WAYS; i++) {
		struct entry *e = &set[i];

		if (!live(t, e, now) || heat(e) == 0)
			return e;
		if (best == NULL || heat(e) < heat(best) ||
		    (heat(e) == heat(best) && age(e, now) > age(best, now)))
			best = e;
	}
	return best;
}

enum throttle_outcome throttle_admit(struct throttle *t, uint64_t key, int64_t now,
				     long *retry_after)
{
	struct entry *set, *e;
	pthread_mutex_t *mu;
	enum throttle_outcome out = THROTTLE_ADMITTED;
	size_t s;

	if (t == NULL)
		return THROTTLE_ADMITTED;
	s = set_of(t, key);
	set = &t->e[s * THROTTLE_WAYS];
	mu = lock_of(t, s);
	pthread_mutex_lock(mu);
	e = find(t, set, key, now);
	if (e == NULL) {
		e = victim(t, set, key, now);
		*e = (struct entry){.key = key, .start = (uint32_t)now};
	}
	if (e->count >= t->limit) {
		out = e->pending & REFUSED_BIT ? THROTTLE_REFUSED : THROTTLE_REFUSED_FIRST;
		e->pending |= REFUSED_BIT;
		*retry_after = t->window - (long)age(e, now);
	} else if (heat(e) >= (unsigned)t->limit || (e->pending & PENDING_MASK) == PENDING_MASK) {
		out = THROTTLE_REFUSED; /* the pending ones may yet fail */
		*retry_after = 1;
	} else {
		e->pending++;
	}
	pthread_mutex_unlock(mu);
	return out;
}

/* Settles one pending attempt of key; counts a failure when failed. */
static void settle(struct throttle *t, uint64_t key, int64_t now, bool failed)
{
	struct entry *set, *e;
	pthread_mutex_t *mu;
	size_t s;

	if (t == NULL)
		return;
	s = set_of(t, key);
	set = &t->e[s * THROTTLE_WAYS];
	mu = lock_of(t, s);
	pthread_mutex_lock(mu);
	e = find(t, set, key, now);
	if (e != NULL && (e->pending & PENDING_MASK) > 0)
		e->pending--;
	if (failed) {
		if (e == NULL) {
			e = victim(t, set, key, now);
			*e = (struct entry){.key = key, .start = (uint32_t)now};
		}
		/* The window opens at the first failure, not at its admission. */
		if (e->count == 0)
			e->start = (uint32_t)now;
		if (e->count < THROTTLE_LIMIT_MAX)
			e->count++;
	}
	pthread_mutex_unlock(mu);
}

void throttle_fail(struct throttle *t, uint64_t key, int64_t now)
{
	settle(t, key, now, true);
}

void throttle_forgive(struct throttle *t, uint64_t key, int64_t now)
{
	settle(t, key, now, false);
}

void throttle_clear(struct throttle *t, uint64_t key)
{
	struct entry *set;
	pthread_mutex_t *mu;
	size_t s;

	if (t == NULL)
		return;
	s = set_of(t, key);
	set = &t->e[s * THROTTLE_WAYS];
	mu = lock_of(t, s);
	pthread_mutex_lock(mu);
	for (int i = 0; i < THROTTLE_WAYS; i++)
		if (set[i].key == key)
			memset(&set[i], 0, sizeof(set[i]));
	pthread_mutex_unlock(mu);
}

long throttle_count(struct throttle *t, uint64_t key, int64_t now)
{
	struct entry *e;
	pthread_mutex_t *mu;
	long n;
	size_t s;

	if (t == NULL)
		return 0;
	s = set_of(t, key);
	mu = lock_of(t, s);
	pthread_mutex_lock(mu);
	e = find(t, &t->e[s * THROTTLE_WAYS], key, now);
	n = e ? e->count : 0;
	pthread_mutex_unlock(mu);
	return n;
}

size_t throttle_bytes(const struct throttle *t)
{
	return t ? sizeof(*t) + t->nsets * THROTTLE_WAYS * sizeof(struct entry) : 0;
}
