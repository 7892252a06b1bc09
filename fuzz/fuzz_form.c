/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for body_form_decode() against a reference decoder
 * written here from body.h's contract: pairs split at '&' (empty pairs
 * skipped), key and value at the first '=', '+' a space, %XX a byte (any
 * other '%' an error), every key and value valid UTF-8 and no key with a
 * NUL; a repeated key becomes the array of its values in order (as DRF's
 * QueryDict keeps them). Both must accept the same inputs and give equal
 * objects; an accepted object, encoded again with every byte as %XX (an
 * array as its key repeated), decodes to itself.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/body.h"
#include "tokend/err.h"
#include "tokend/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int hex(uint8_t c)
{
	static const char digits[] = "0123456789abcdef0123456789ABCDEF";
	const char *p = c ? memchr(digits, c, sizeof digits - 1) : NULL;
	return p ? (int)((p - digits) % 16) : -1;
}

/* Unescapes [s, s+n) into out; -1 when malformed. */
static long unescape(const uint8_t *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			if (n - i < 3)
				return -1;
			if (hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0)
				return -1;
			out[o++] = (char)(hex(s[i + 1]) * 16 + hex(s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i] == '+' ? ' ' : (char)s[i];
		}
	}
	return (long)o;
}

static json_t *reference(const uint8_t *d, size_t n)
{
	json_t *obj = json_object();
	char *k = malloc(n + 1), *v = malloc(n + 1);
	size_t i = 0;

	while (obj && k && v && i <= n) {
		size_t end = i, eq;
		long kl, vl = 0;
		while (end < n && d[end] != '&')
			end++;
		for (eq = i; eq < end && d[eq] != '='; eq++)
			;
		if (end > i) {
			kl = unescape(d + i, eq - i, k);
			if (eq < end)
				vl = unescape(d + eq + 1, end - eq - 1, v);
			if (kl < 0 || vl < 0 || memchr(k, '\0', (size_t)kl) ||
			    !util_utf8_valid(k, (size_t)kl) || !util_utf8_valid(v, (size_t)vl)) {
				json_decref(obj);
				obj = NULL;
				break;
			}
			k[kl] = '\0';
			json_t *old = json_object_get(obj, k), *nv = json_stringn(v, (size_t)vl);
			if (old == NULL) {
				json_object_set_new(obj, k, nv);
			} else if (json_is_array(old)) {
				json_array_append_new(old, nv);
			} else {
				json_t *arr = json_pack("[O]", old);
				json_array_append_new(arr, nv);
				json_object_set_new(obj, k, arr);
			}
		}
		i = end + 1;
	}
	free(k);
	free(v);
	return obj;
}

static void encode(struct util_buf *b, const char *s, size_t n)
{
	static const char h[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		char e[3] = {'%', h[(unsigned char)s[i] >> 4], h[s[i] & 15]};
		util_buf_add(b, e, 3);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *got = NULL, *want = reference(data, size), *again = NULL, *v;
	struct util_buf b = {0};
	const char *k;
	int rc = body_form_decode((const char *)data, size, &got);

	if ((rc == 0) != (want != NULL) || (rc != 0 && rc != TOKEND_EINVAL))
		abort();
	if (rc == 0 && !json_equal(got, want)) {
		fprintf(stderr, "decoded %s, want %s\n", json_dumps(got, JSON_COMPACT),
			json_dumps(want, JSON_COMPACT));
		abort();
	}
	if (rc == 0) {
		json_object_foreach(got, k, v) {
			size_t i, n = json_is_array(v) ? json_array_size(v) : 1;
			if (!json_is_string(v) && !(json_is_array(v) && n >= 2))
				abort();
			for (i = 0; i < n; i++) {
				json_t *one = json_is_array(v) ? json_array_get(v, i) : v;
				if (!json_is_string(one))
					abort();
				if (b.len)
					util_buf_add(&b, "&", 1);
				encode(&b, k, strlen(k));
				util_buf_add(&b, "=", 1);
				encode(&b, json_string_value(one), json_string_length(one));
			}
		}
		if (b.failed || body_form_decode(b.p ? b.p : "", b.len, &again) != 0 ||
		    !json_equal(again, got))
			abort();
		json_decref(got);
	}
	json_decref(again);
	json_decref(want);
	free(b.p);
	return 0;
}
