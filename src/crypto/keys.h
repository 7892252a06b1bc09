/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/crypto/: the in-memory key set shared by
 * the key-file code (keys.c) and the minting/checking code (jwtsign.c).
 */
#ifndef TOKEND_CRYPTO_KEYS_H
#define TOKEND_CRYPTO_KEYS_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "tokend/jwtsign.h"

enum key_alg { KEY_HS256, KEY_RS256, KEY_ES256 };

struct key {
	char kid[JWTSIGN_KID_LEN + 1];
	enum key_alg alg;
	unsigned char secret[JWTSIGN_HS_KEY_BYTES]; /* HS256 */
	size_t secret_len;
	EVP_PKEY *pkey; /* RS256 / ES256, parsed once */
	EVP_MAC_CTX *mac; /* HS256: HMAC-SHA256 keyed once; copied per thread */
	unsigned long long serial; /* unique in the process: names mac's copies */
	time_t mtime;
	/* base64url of the exact header tokend mints with this key: a token
	 * whose first part is these bytes needs no header parsing. */
	char header_b64[96];
	size_t header_len;
};

/* One immutable generation of keys; replaced whole on reload. */
struct keyset {
	struct key keys[JWTSIGN_MAX_KEYS];
	size_t count;
	size_t current;
};

struct jwtsign_keys {
	pthread_rwlock_t lock; /* readers mint/check; reload swaps set */
	struct keyset *set;
	char dir[512];
	char alg[8];
	char current_kid[JWTSIGN_KID_LEN + 1];
	char iss_json[300]; /* the "iss" claim as a JSON string literal, or "" */
	char aud_json[300]; /* the "aud" claim as a JSON string literal, or "" */
	atomic_uint generation; /* reloads so far */
};

/* Names of enum key_alg. */
const char *keys_alg_name(enum key_alg alg);

/* The key of kid in set, or NULL. */
const struct key *keys_find(const struct keyset *set, const char *kid);

/* A context of HMAC-SHA256 keyed with key; NULL on failure. */
EVP_MAC_CTX *keys_hmac_new(const unsigned char *key, size_t len);

/*
 * Sets k->header_b64: the header tokend mints with k, as libjwt writes it
 * (sorted keys, compact): {"alg":"HS256","kid":"...","typ":"JWT"}.
 */
void keys_header_init(struct key *k);

/* Builds a key set from dir (see jwtsign_keys_load). */
int keys_read_dir(const char *dir, const char *alg, int create, struct keyset **out,
		  char *errbuf, size_t errlen);

/* Frees a key set, wiping secrets; accepts NULL. */
void keys_set_free(struct keyset *set);

#endif
