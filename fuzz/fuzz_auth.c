/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the Authorization header as handler_authenticated()
 * sees it: a NUL-terminated value (libmicrohttpd cuts a value at a NUL).
 * handler_bearer_parse() must agree with a reference reading of the rule
 * ("Bearer" SP, then one non-empty value without spaces; empty = missing),
 * and a token it hands on goes through jwtsign_check() with the driver's
 * fixed keys, as the authenticator does next; seeds hold valid tokens.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_keys.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/jwtsign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct jwtsign_keys *keys;

static enum handler_bearer reference(const char *h, size_t *off)
{
	size_t n = strlen(h);

	if (n == 0)
		return BEARER_MISSING;
	if (n < 8 || memcmp(h, "Bearer", 6) != 0 || h[6] != ' ')
		return BEARER_MALFORMED;
	for (size_t i = 7; i < n; i++)
		if (h[i] == ' ')
			return BEARER_MALFORMED;
	*off = 7;
	return BEARER_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *h = malloc(size + 1);
	const char *tok = NULL;
	size_t len = 0, off = 0;
	enum handler_bearer got, want;
	struct jwtsign_policy pol = {.now = FUZZ_NOW};
	struct jwtsign_token t;

	if (keys == NULL)
		keys = fuzz_keys_load();
	if (h == NULL)
		return 0;
	memcpy(h, data, size);
	h[size] = '\0';
	got = handler_bearer_parse(h, &tok, &len);
	want = reference(h, &off);
	if (got != want)
		abort();
	if (got == BEARER_OK) {
		if (tok != h + off || len != strlen(h) - off)
			abort();
		if (jwtsign_check(keys, tok, len, &pol, &t, NULL) == 0 &&
		    strcmp(t.kid, FUZZ_HS_KID) != 0 && strcmp(t.kid, FUZZ_ES_KID) != 0)
			abort();
	}
	if (handler_bearer_parse(NULL, &tok, &len) != BEARER_MISSING)
		abort();
	free(h);
	return 0;
}
