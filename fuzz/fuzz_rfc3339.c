/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for RFC 3339 times (util.h). The input, up to a NUL, is
 * parsed with util_time_parse_rfc3339(); when it is accepted:
 *   - the value equals one computed here from the fixed-position fields
 *     with a days-from-civil formula (no timegm), minus the offset;
 *   - formatting the value with util_time_rfc3339() and parsing that gives
 *     the value back (for times from 1970 to 9999), and a text already in
 *     the canonical form ("YYYY-MM-DDTHH:MM:SSZ", not second 60) formats
 *     back to itself.
 * The first 8 bytes, read as a number of seconds, also go through
 * format-then-parse.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_T 253402300799LL /* 9999-12-31T23:59:59Z */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int num(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

static void round_trip(int64_t t)
{
	char text[RFC3339_LEN];
	int64_t back = -1;

	if (t < 0 || t > MAX_T)
		return;
	util_time_rfc3339(t, text);
	if (util_time_parse_rfc3339(text, &back) != 0 || back != t) {
		fprintf(stderr, "%lld -> %s -> %lld\n", (long long)t, text, (long long)back);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	int64_t t = 0, want, off = 0;
	size_t n;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	n = strlen(s);
	if (util_time_parse_rfc3339(s, &t) == 0) {
		int sec = num(s + 17, 2);
		if (n < 20)
			abort();
		if (s[n - 1] != 'Z' && s[n - 1] != 'z') {
			off = (num(s + n - 5, 2) * 3600 + num(s + n - 2, 2) * 60) *
			      (s[n - 6] == '+' ? 1 : -1);
		}
		want = days_from_civil(num(s, 4), num(s + 5, 2), num(s + 8, 2)) * 86400 +
		       num(s + 11, 2) * 3600 + num(s + 14, 2) * 60 + (sec == 60 ? 59 : sec) - off;
		if (t != want) {
			fprintf(stderr, "%s: %lld, want %lld\n", s, (long long)t, (long long)want);
			abort();
		}
		round_trip(t);
		if (n == 20 && s[10] == 'T' && s[19] == 'Z' && sec != 60) {
			char text[RFC3339_LEN];
			util_time_rfc3339(t, text);
			if (strcmp(text, s) != 0)
				abort();
		}
	}
	if (size >= 8) {
		int64_t v;
		memcpy(&v, data, sizeof v);
		round_trip(v % (MAX_T + 1));
	}
	free(s);
	return 0;
}
