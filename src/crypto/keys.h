/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/crypto/: the in-memory key set shared by
 * the key-file code (keys.c) and the minting/checking code (jwtsign.c).
 */
#ifndef TOKEND_CRYPTO_KEYS_H
#define TOKEND_CRYPTO_KEYS_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdatomic.h>
#include <time.h>

#include "tokend/keys.h"

enum key_alg { KEY_HS256, KEY_RS256, KEY_ES256 };

struct key {
	char kid[JWTSIGN_KID_LEN + 1];
	enum key_alg alg;
	unsigned char secret[JWTSIGN_HS_KEY_BYTES]; /* HS256 */
	size_t secret_len;
	EVP_PKEY *pkey;            /* RS256 / ES256, parsed once */
	EVP_MAC_CTX *mac;          /* HS256: HMAC-SHA256 keyed once; copied per thread */
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
	/* The kid "current" names, "" when absent or malformed; when that key
	 * is not in keys, current is a fallback (see keys_read_dir). */
	char named[JWTSIGN_KID_LEN + 1];
};

struct jwtsign_keys {
	pthread_rwlock_t lock; /* readers mint/check; reload swaps set */
	struct keyset *set;
	char dir[512];
	char alg[8];
	char current_kid[JWTSIGN_KID_LEN + 1];
	atomic_uint generation; /* reloads so far */
	/*
	 * Reloads (SIGHUP, the periodic check, an unknown kid) are serialised
	 * by reload_lock, which guards what follows it; checks and mints never
	 * take it.
	 */
	pthread_mutex_t reload_lock;
	uint64_t loaded_fp;           /* fingerprint of the directory set was read from */
	uint64_t tried_fp;            /* of the last directory read, loaded or not */
	char last_err[512];           /* the last reload error logged; "" after a success */
	bool unknown_reload;          /* an unknown kid may re-read the directory */
	atomic_llong unknown_next_ms; /* monotonic ms before which it may not */
};

/* At most one re-read of the directory per this many ms for unknown kids. */
#define KEYS_UNKNOWN_GAP_MS 1000

/*
 * The gate of the unknown-kid re-read: true for exactly one caller per gap
 * ms (of now_ms, a monotonic clock), whatever the number of threads asking;
 * moves *next_ms on by gap. Lock-free: one compare-and-swap.
 */
bool keys_gate_pass(atomic_llong *next_ms, int64_t now_ms, int64_t gap_ms);

/*
 * A fingerprint of the key directory as the reload sees it: the directory's
 * own mode and owner and, for each key file and "current", the name, inode,
 * size, mtime, ctime (a chmod or chown), mode and owner, combined so that
 * the order readdir gives does not matter. A directory that cannot be
 * opened or is unsafe gets a fingerprint of its error instead, so the same
 * error is not retried at each check. One readdir and an fstatat per entry;
 * no file is opened.
 */
uint64_t keys_dir_fingerprint(const char *dir);

/*
 * Describes what changed from old to new into out: "added K1 K2; retired
 * K3; signing K4 -> K5", or "no key changed". Returns out.
 */
const char *keys_diff(const struct keyset *old, const struct keyset *new, char *out, size_t outlen);

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
int keys_read_dir(const char *dir, const char *alg, int create, struct keyset **out, char *errbuf,
		  size_t errlen);

/* Frees a key set, wiping secrets; accepts NULL. */
void keys_set_free(struct keyset *set);

#endif
