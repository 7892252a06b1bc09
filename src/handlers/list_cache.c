/* SPDX-License-Identifier: MIT */
/*
 * This module implements the per-thread cache of API-token listings (see
 * list_cache.h): a direct-mapped table of LIST_CACHE_SLOTS entries hung off
 * a per-thread object (util_tls), freed when its thread ends.
 */
#include "handlers/list_cache.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/util.h"

struct slot {
	char user[UUID_STR_LEN];
	char team[UUID_STR_LEN];
	int64_t version;
	unsigned keys_gen;
	int64_t valid_until;
	char *body; /* NULL: empty slot */
	size_t len;
};

struct cache {
	struct slot slots[LIST_CACHE_SLOTS];
};

/* A body lists bearer tokens: wiped before it is freed. */
static void slot_clear(struct slot *s)
{
	if (s->body != NULL)
		OPENSSL_cleanse(s->body, s->len);
	free(s->body);
	s->body = NULL;
}

static void cache_free(void *p)
{
	struct cache *c = p;

	for (size_t i = 0; i < LIST_CACHE_SLOTS; i++)
		slot_clear(&c->slots[i]);
	free(c);
}

static struct util_tls caches = UTIL_TLS_INIT(sizeof(struct cache), cache_free);

/* The slot of (user, team): FNV-1a over both. */
static struct slot *slot_of(struct cache *c, const struct list_cache_key *k)
{
	uint32_t h = 2166136261u;

	for (const char *p = k->user_uuid; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (const char *p = k->team_uuid; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return &c->slots[h % LIST_CACHE_SLOTS];
}

char *list_cache_get(const struct list_cache_key *k, int64_t now)
{
	struct cache *c = util_tls_get(&caches);
	struct slot *s;
	char *copy;

	if (c == NULL)
		return NULL;
	s = slot_of(c, k);
	if (s->body == NULL || s->version != k->version || s->keys_gen != k->keys_gen ||
	    now >= s->valid_until || strcmp(s->user, k->user_uuid) != 0 ||
	    strcmp(s->team, k->team_uuid) != 0)
		return NULL;
	copy = malloc(s->len + 1);
	if (copy != NULL)
		memcpy(copy, s->body, s->len + 1);
	return copy;
}

void list_cache_put(const struct list_cache_key *k, int64_t valid_until, const char *body,
		    size_t len)
{
	struct cache *c;
	struct slot *s;

	if (len > LIST_CACHE_MAX_BODY || strlen(k->user_uuid) >= UUID_STR_LEN ||
	    strlen(k->team_uuid) >= UUID_STR_LEN)
		return;
	c = util_tls_make(&caches);
	if (c == NULL)
		return;
	s = slot_of(c, k);
	slot_clear(s);
	s->body = malloc(len + 1);
	if (s->body == NULL)
		return;
	memcpy(s->body, body, len);
	s->body[len] = '\0';
	s->len = len;
	memcpy(s->user, k->user_uuid, strlen(k->user_uuid) + 1);
	memcpy(s->team, k->team_uuid, strlen(k->team_uuid) + 1);
	s->version = k->version;
	s->keys_gen = k->keys_gen;
	s->valid_until = valid_until;
}
