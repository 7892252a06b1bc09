/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for password_parse(), the reader of stored hashes, against
 * a reference reading of the grammar in password.h written here:
 * "pbkdf2_sha256$" [1-9][0-9]* (at most PASSWORD_MAX_ITERATIONS) "$" salt
 * (one or more bytes, no '$') "$" 44 bytes without '$', at most
 * PASSWORD_HASH_MAX bytes in all. Both must agree; the parts of an
 * accepted hash, written out again, give back the input; and an accepted
 * hash of few iterations goes through password_verify() (it never matches
 * a password of another hash by chance, and never crashes).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/password.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool reference(const char *s, long *iter)
{
	static const char prefix[] = "pbkdf2_sha256$";
	size_t n = strlen(s), i = sizeof prefix - 1, start;
	long v = 0;

	if (n > PASSWORD_HASH_MAX || strncmp(s, prefix, i) != 0 || s[i] < '1' || s[i] > '9')
		return false;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		v = v * 10 + (s[i] - '0');
		if (v > PASSWORD_MAX_ITERATIONS)
			return false;
	}
	if (s[i++] != '$')
		return false;
	start = i;
	while (s[i] != '\0' && s[i] != '$')
		i++;
	if (i == start || s[i] != '$')
		return false;
	i++;
	if (n - i != 44 || memchr(s + i, '$', 44) != NULL)
		return false;
	*iter = v;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	char again[PASSWORD_HASH_MAX + 64];
	const char *salt = NULL, *hash = NULL;
	size_t saltlen = 0;
	long iter = 0, want_iter = 0;
	bool got, want;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	got = password_parse(s, &iter, &salt, &saltlen, &hash);
	want = reference(s, &want_iter);
	if (got != want) {
		fprintf(stderr, "\"%s\": parse %d, reference %d\n", s, got, want);
		abort();
	}
	if (got) {
		if (iter != want_iter || saltlen == 0 || salt < s || hash < salt + saltlen ||
		    strlen(hash) != 44 || memchr(salt, '$', saltlen) != NULL)
			abort();
		snprintf(again, sizeof again, "pbkdf2_sha256$%ld$%.*s$%s", iter, (int)saltlen, salt,
			 hash);
		if (strcmp(again, s) != 0)
			abort();
		if (iter <= 64 && password_verify("fuzz", 4, s, 1, NULL) &&
		    password_verify("fuzz!", 5, s, 1, NULL))
			abort(); /* two passwords matching one hash */
	}
	free(s);
	return 0;
}
