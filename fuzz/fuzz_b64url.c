/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for base64url (util.h), both ways round:
 *   decode: what decodes encodes back to the very same text (the decoder is
 *           strict: one text per byte string), into the exact size it
 *           reported; one byte less of room is refused;
 *   encode: the input's encoding decodes back to the input, and its length
 *           is the documented one; text outside the alphabet never decodes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool in_alphabet(const uint8_t *s, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\0' || memchr(a, s[i], sizeof a - 1) == NULL)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cap = size + 8, enc_cap = (size + 2) / 3 * 4 + 1;
	unsigned char *dec = malloc(cap);
	char *enc = malloc(enc_cap + 8);
	size_t n = 0, m, want;
	int rc;

	if (dec == NULL || enc == NULL)
		goto out;
	/* Decode, then encode back. */
	rc = util_b64url_decode((const char *)data, size, dec, cap, &n);
	if (rc == 0) {
		if (!in_alphabet(data, size) || size % 4 == 1 || n != size * 3 / 4)
			abort();
		m = util_b64url_encode(dec, n, enc, enc_cap + 8);
		if (m != size || memcmp(enc, data, size) != 0)
			abort();
		if (n > 0 &&
		    util_b64url_decode((const char *)data, size, dec, n - 1, &m) != TOKEND_ENOMEM)
			abort();
	} else if (rc != TOKEND_EINVAL) {
		abort();
	}
	/* Encode, then decode back. */
	want = size / 3 * 4 + (size % 3 ? size % 3 + 1 : 0);
	if (util_b64url_encode(data, size, enc, want) != 0) /* no room for the NUL */
		abort();
	m = util_b64url_encode(data, size, enc, want + 1);
	if (m != want || enc[m] != '\0' || !in_alphabet((const uint8_t *)enc, m))
		abort();
	if (util_b64url_decode(enc, m, dec, cap, &n) != 0 || n != size || memcmp(dec, data, size))
		abort();
out:
	free(dec);
	free(enc);
	return 0;
}
