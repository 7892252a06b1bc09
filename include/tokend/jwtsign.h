/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of JWT minting and of the signing keys. Keys
 * live in files of a key directory (0700), one per key, named
 * "<kid>.<alg>.key" (0600); an HS256 file holds 64 random bytes as base64url
 * text on one line, and the HMAC key is the decoded bytes. Keys never enter
 * the database. src/crypto/jwtsign.c is the only includer of jwt.h.
 */
#ifndef TOKEND_JWTSIGN_H
#define TOKEND_JWTSIGN_H

#include <stddef.h>
#include <stdint.h>

#define JWTSIGN_KID_LEN 16     /* hex characters of a key id */
#define JWTSIGN_HS_KEY_BYTES 64
#define JWTSIGN_MAX_TOKEN 8192 /* longest token ever decoded */

struct jwtsign_keys; /* opaque: the loaded keys and which one signs */

/* The claims tokend puts in a token; NULL strings are left out. */
struct jwtsign_claims {
	const char *token_type; /* "access" | "refresh" | "api" */
	const char *jti;        /* UUID */
	const char *user_id;    /* UUID */
	const char *team_uuid;  /* API tokens only */
	int64_t iat;
	int64_t exp;
};

/*
 * Loads every key file of dir for algorithm alg (only "HS256" for now). When
 * none exists and create is true, makes dir (0700) and a new key (0600).
 * The signing key is the most recently modified one. On success *out owns
 * the keys (free with jwtsign_keys_free). Errors: TOKEND_ENOTFOUND (no key
 * and !create), TOKEND_EINVAL (bad algorithm, malformed or short key file,
 * unsafe permissions), TOKEND_EIO, TOKEND_ECRYPTO. errbuf gets a message.
 */
int jwtsign_keys_load(const char *dir, const char *alg, int create,
		      struct jwtsign_keys **out, char *errbuf, size_t errlen);

/* Frees the keys (wiping secrets) and clears *keys; accepts NULL. */
void jwtsign_keys_free(struct jwtsign_keys **keys);

/* The kid of the signing key (valid while keys lives). */
const char *jwtsign_current_kid(const struct jwtsign_keys *keys);

/*
 * Mints a signed JWT with claims c and the signing key (header: alg, typ,
 * kid). On success *token is a malloc'd string the caller frees. Returns 0,
 * TOKEND_ENOMEM or TOKEND_ECRYPTO.
 */
int jwtsign_mint(const struct jwtsign_keys *keys, const struct jwtsign_claims *c,
		 char **token);

#endif
