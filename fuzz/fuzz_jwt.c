/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for jwtsign_check(). The first byte picks a mode:
 *   0  the rest is a token, checked as received (hostile input);
 *   1  the rest is a payload, signed here (fuzz_keys.h) under the header
 *      tokend mints, so that every input passes the signature and reaches
 *      the claims; 3: the same with a leeway taken from the next byte;
 *   2  the next byte is a header length: a header of that many bytes and
 *      the rest as payload, both signed here.
 * Whatever the token, checking ends in 0 or TOKEN_EAUTH with a reason. For
 * signed inputs the fast path (payloads in the form tokend mints) and the
 * full JSON path (policy.full_json) must agree on the outcome, the reason
 * and every field of an accepted token's result (after a refusal the
 * result is unspecified: the fast path may have filled some fields), and the claims of an accepted token,
 * minted again with jwtsign_mint(), check back to the very same result.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_keys.h"
#include "tokend/err.h"
#include "tokend/jwtsign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct jwtsign_keys *keys;
static char hs_header[128]; /* base64url of the header tokend mints with the HS256 key */

static void init(void)
{
	static const char h[] = "{\"alg\":\"HS256\",\"kid\":\"" FUZZ_HS_KID "\",\"typ\":\"JWT\"}";

	keys = fuzz_keys_load();
	util_b64url_encode((const unsigned char *)h, sizeof h - 1, hs_header, sizeof hs_header);
}

static bool token_sane(const struct jwtsign_token *t)
{
	return (strcmp(t->kid, FUZZ_HS_KID) == 0 || strcmp(t->kid, FUZZ_ES_KID) == 0) &&
	       (strcmp(t->token_type, "access") == 0 || strcmp(t->token_type, "refresh") == 0 ||
		strcmp(t->token_type, "api") == 0) &&
	       util_uuid_valid(t->jti) && util_uuid_valid(t->user_id) &&
	       (strcmp(t->token_type, "api") == 0 ? util_uuid_valid(t->team_uuid)
						  : t->team_uuid[0] == '\0');
}

/* Checks tok both ways and compares; returns the fast path's outcome. */
static int differential(const char *tok, size_t len, long leeway)
{
	struct jwtsign_policy pol = {.now = FUZZ_NOW, .leeway = leeway};
	struct jwtsign_policy full = pol;
	struct jwtsign_token a, b;
	const char *ra = "unset", *rb = "unset";
	int rca, rcb;

	full.full_json = true;
	rca = jwtsign_check(keys, tok, len, &pol, &a, &ra);
	rcb = jwtsign_check(keys, tok, len, &full, &b, &rb);
	if (rca != rcb || (ra == NULL) != (rb == NULL) || (ra && strcmp(ra, rb) != 0) ||
	    (rca == 0 && memcmp(&a, &b, sizeof a) != 0)) {
		fprintf(stderr, "fast: %d %s / full: %d %s\n", rca, ra ? ra : "-", rcb,
			rb ? rb : "-");
		abort();
	}
	if (rca == 0 && !token_sane(&a))
		abort();
	if (rca != 0 && (rca != TOKEND_EAUTH || ra == NULL))
		abort();
	return rca;
}

/* The claims of an accepted token, minted again, check back to the same. */
static void mint_round_trip(const struct jwtsign_token *t)
{
	struct jwtsign_claims c = {.token_type = t->token_type,
				   .jti = t->jti,
				   .user_id = t->user_id,
				   .team_uuid = t->team_uuid[0] ? t->team_uuid : NULL,
				   .iat = t->iat,
				   .exp = t->exp,
				   .kid = FUZZ_HS_KID};
	struct jwtsign_token again;
	char *minted = NULL;

	if (jwtsign_mint(keys, &c, &minted) != 0 || differential(minted, strlen(minted), 0) != 0)
		abort();
	(void)jwtsign_check(keys, minted, strlen(minted), &(struct jwtsign_policy){.now = FUZZ_NOW},
			    &again, NULL);
	if (memcmp(&again, t, sizeof again) != 0)
		abort();
	free(minted);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char tok[3 * JWTSIGN_MAX_TOKEN];
	static char header[2 * JWTSIGN_MAX_TOKEN];
	struct jwtsign_policy pol = {.now = FUZZ_NOW};
	struct jwtsign_token t;
	const char *reason = NULL;
	size_t n, hl;
	int rc;

	if (keys == NULL)
		init();
	if (size < 1)
		return 0;
	switch (data[0] & 3) {
	case 0:
		rc = jwtsign_check(keys, (const char *)data + 1, size - 1, &pol, &t, &reason);
		if (rc == 0 ? (reason != NULL || !token_sane(&t)) : (rc != TOKEND_EAUTH || !reason))
			abort();
		break;
	case 1:
	case 3: {
		long leeway = (data[0] & 3) == 3 && size > 1 ? data[1] * 7L : 0;
		size_t skip = (data[0] & 3) == 3 && size > 1 ? 2 : 1;
		n = fuzz_sign_hs256(hs_header, data + skip, size - skip, tok, sizeof tok);
		if (n > 0 && differential(tok, n, leeway) == 0 && leeway == 0) {
			(void)jwtsign_check(keys, tok, n, &pol, &t, NULL);
			mint_round_trip(&t);
		}
		break;
	}
	case 2:
		if (size < 2)
			return 0;
		hl = data[1] < size - 2 ? data[1] : size - 2;
		if (util_b64url_encode(data + 2, hl, header, sizeof header) == 0 && hl > 0)
			return 0;
		n = fuzz_sign_hs256(header, data + 2 + hl, size - 2 - hl, tok, sizeof tok);
		if (n > 0)
			(void)differential(tok, n, 0);
		break;
	}
	return 0;
}
