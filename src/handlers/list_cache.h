/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/handlers/: the cache of API-token listings.
 * A listing (the body of GET /api/openapi/token/{team}/) is re-minted token
 * by token, about 30 us for ten; the cache keeps the body each HTTP thread
 * built last for a user and team, and hands it out again while nothing it
 * shows can have changed: the same version of the user's tokens in that
 * team (the store bumps it on every change, from any process), the same
 * signing keys (no reload since), and none of its tokens expired.
 * Per thread, so without locks; bounded: LIST_CACHE_SLOTS bodies of at
 * most LIST_CACHE_MAX_BODY bytes each per thread.
 */
#ifndef TOKEND_LIST_CACHE_H
#define TOKEND_LIST_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define LIST_CACHE_SLOTS 64
#define LIST_CACHE_MAX_BODY (64 * 1024)

/* What a listing was built from; read before building it. */
struct list_cache_key {
	const char *user_uuid;
	const char *team_uuid;
	int64_t version;   /* store_api_token_version() */
	unsigned keys_gen; /* jwtsign_keys_generation() */
};

/*
 * A malloc'd copy of this thread's body for k, if it is still good at now
 * (Unix seconds); NULL otherwise (or out of memory).
 */
char *list_cache_get(const struct list_cache_key *k, int64_t now);

/*
 * Keeps a copy of body (len bytes) for k, good until now reaches
 * valid_until (the earliest expiry among the tokens it lists). Larger
 * bodies than LIST_CACHE_MAX_BODY, and failures, keep nothing.
 */
void list_cache_put(const struct list_cache_key *k, int64_t valid_until, const char *body,
		    size_t len);

#endif
