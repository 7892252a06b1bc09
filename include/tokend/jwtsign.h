/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of JWT minting and checking and of the JWKS
 * document, with the key set of tokend/keys.h. What a token must carry
 * beyond its signature (iss, aud, the leeway) is the caller's policy,
 * passed in on each call (handler_token_policy builds it from the config);
 * the key set holds keys only.
 * src/crypto/ is the only place that touches key bytes.
 *
 * Every function here is thread-safe, also while jwtsign_keys_reload()
 * swaps the key set.
 */
#ifndef TOKEND_JWTSIGN_H
#define TOKEND_JWTSIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokend/keys.h"
#include "tokend/util.h"

#define JWTSIGN_MAX_TOKEN 8192 /* longest token ever decoded */

/* The claims tokend puts in a token; NULL strings are left out. */
struct jwtsign_claims {
	const char *token_type; /* "access" | "refresh" | "api" */
	const char *jti;        /* UUID */
	const char *user_id;    /* UUID */
	const char *team_uuid;  /* API tokens only */
	int64_t iat;
	int64_t exp;
	const char *kid; /* the key to sign with; NULL = the current one */
	const char *sid; /* access and refresh tokens: the session (refresh family) */
	/* "iss" and "aud": the policy's (handler_token_policy), NULL or "" = none;
	 * valid UTF-8, else minting fails with TOKEND_EINVAL. */
	const char *issuer;
	const char *audience;
};

/* What a checked token says. */
struct jwtsign_token {
	char kid[JWTSIGN_KID_LEN + 1];
	char token_type[8];
	char jti[UUID_STR_LEN];
	char user_id[UUID_STR_LEN];
	char team_uuid[UUID_STR_LEN]; /* "" unless token_type is "api" */
	char sid[UUID_STR_LEN];       /* "" for API tokens and tokens minted without one */
	int64_t iat;
	int64_t exp;
};

/* What checking requires beyond the signature. */
struct jwtsign_policy {
	int64_t now;
	long leeway;          /* seconds of clock skew forgiven */
	const char *issuer;   /* required "iss" when not NULL/"" */
	const char *audience; /* required in "aud" when not NULL/"" */
	/*
	 * Skips the fast path for tokend's own payload form, so that every
	 * payload is read as JSON. It exists only so that tests and the fuzz
	 * driver can compare the two paths; tokend itself never sets it.
	 */
	bool full_json;
};

/*
 * Mints a signed JWT with claims c and the key c->kid, else the current key
 * (header: alg, kid, typ). HS256 and RS256 are deterministic: the same
 * claims and key give the same string. On success *token is a malloc'd
 * string the caller frees. Returns 0, TOKEND_ENOMEM, TOKEND_ECRYPTO, or
 * TOKEND_ENOTFOUND when c->kid is not loaded.
 */
int jwtsign_mint(const struct jwtsign_keys *keys, const struct jwtsign_claims *c, char **token);

/*
 * Checks token (len bytes): at most JWTSIGN_MAX_TOKEN bytes, three
 * base64url parts, header and payload JSON objects without duplicate keys,
 * a known kid whose algorithm equals the header's alg, a valid signature
 * (constant-time), exp required and not passed, nbf and iat not in the
 * future (both beyond the leeway), token_type one of ours, jti and user_id
 * UUIDs, team_uuid for API tokens, sid a UUID when present (kept for access
 * and refresh tokens only), and iss/aud when the policy asks.
 * Returns 0 and fills out, or TOKEND_EAUTH; reason (if not NULL) gets a
 * short constant phrase for messages.
 */
int jwtsign_check(const struct jwtsign_keys *keys, const char *token, size_t len,
		  const struct jwtsign_policy *policy, struct jwtsign_token *out,
		  const char **reason);

/*
 * Returns the JWKS document (RFC 7517) of the public keys as a malloc'd JSON
 * string: {"keys": [...]} with kid, kty, alg, use; HS256 keys are never
 * published. NULL when out of memory.
 */
char *jwtsign_jwks(const struct jwtsign_keys *keys);

#endif
