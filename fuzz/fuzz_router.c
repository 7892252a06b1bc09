/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for router_match() against a reference matcher written
 * here from router.h's contract: split path and pattern into segments at
 * '/', one trailing slash on the path optional (and none on the pattern
 * counted), literal segments equal byte for byte, a {capture} any non-empty
 * segment shorter than HANDLER_PARAM_MAX; the first route in table order
 * whose pattern and method match wins (HEAD matches a GET route); a path
 * that matches only under other methods is TOKEND_EMETHOD with those
 * methods, in table order, in Allow (", HEAD" after each GET). First byte: the method (and a small Allow buffer now and then);
 * the rest, up to a NUL, is the path.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEGS 64

/* Splits s (starting with '/') at '/' into segments; -1 if too many. */
static int split(const char *s, size_t len, const char **seg, size_t *seglen)
{
	int n = 0;
	size_t i = 1, start = 1;

	if (len == 0 || s[0] != '/')
		return -1;
	for (; i <= len; i++) {
		if (i == len || s[i] == '/') {
			if (n == MAX_SEGS)
				return -1;
			seg[n] = s + start;
			seglen[n++] = i - start;
			start = i + 1;
		}
	}
	return n;
}

static bool ref_match(const char *pattern, const char *path,
		      char params[HANDLER_MAX_PARAMS][HANDLER_PARAM_MAX])
{
	const char *ps[MAX_SEGS], *ts[MAX_SEGS];
	size_t pl[MAX_SEGS], tl[MAX_SEGS];
	size_t plen = strlen(pattern), tlen = strlen(path);
	int np, nt, caps = 0;

	if (plen > 1 && pattern[plen - 1] == '/')
		plen--;
	if (tlen > 1 && path[tlen - 1] == '/' && path[tlen - 2] != '/')
		tlen--;
	np = split(pattern, plen, ps, pl);
	nt = split(path, tlen, ts, tl);
	if (np < 0 || nt < 0 || np != nt)
		return false;
	for (int i = 0; i < np; i++) {
		if (pl[i] > 1 && ps[i][0] == '{' && ps[i][pl[i] - 1] == '}') {
			if (tl[i] == 0 || tl[i] >= HANDLER_PARAM_MAX || caps >= HANDLER_MAX_PARAMS)
				return false;
			memcpy(params[caps], ts[i], tl[i]);
			params[caps++][tl[i]] = '\0';
		} else if (pl[i] != tl[i] || memcmp(ps[i], ts[i], pl[i]) != 0) {
			return false;
		}
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = {"GET",    "POST", "HEAD", "PUT",
					      "DELETE", "get",  "",     "OPTIONS"};
	char params[HANDLER_MAX_PARAMS][HANDLER_PARAM_MAX];
	char want_params[HANDLER_MAX_PARAMS][HANDLER_PARAM_MAX];
	char allow[64], want_allow[256] = "";
	const struct route *routes, *got, *want = NULL;
	size_t nroutes, allowlen;
	const char *method;
	char *path;
	int err = 1, want_err;
	bool known = false;

	if (size < 1)
		return 0;
	method = methods[data[0] & 7];
	allowlen = data[0] & 0x80 ? (size_t)(data[0] >> 3 & 7) : sizeof allow;
	path = malloc(size);
	if (path == NULL)
		return 0;
	memcpy(path, data + 1, size - 1);
	path[size - 1] = '\0';
	memset(params, 0, sizeof params);
	memset(want_params, 0, sizeof want_params);

	routes = router_routes(&nroutes);
	for (size_t i = 0; i < nroutes && want == NULL; i++) {
		char tmp[HANDLER_MAX_PARAMS][HANDLER_PARAM_MAX];
		memset(tmp, 0, sizeof tmp);
		if (!ref_match(routes[i].pattern, path, tmp))
			continue;
		if (strcmp(routes[i].method, method) == 0 ||
		    (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0)) {
			want = &routes[i];
			memcpy(want_params, tmp, sizeof tmp);
		} else {
			size_t u = strlen(want_allow);
			snprintf(want_allow + u, sizeof want_allow - u, "%s%s%s", known ? ", " : "",
				 routes[i].method,
				 strcmp(routes[i].method, "GET") == 0 ? ", HEAD" : "");
			known = true;
		}
	}
	want_err = want ? 0 : known ? TOKEND_EMETHOD : TOKEND_ENOTFOUND;

	got = router_match(method, path, params, allow, allowlen, &err);
	if (got != want || err != want_err) {
		fprintf(stderr, "path \"%s\" %s: got %s %d, want %s %d\n", path, method,
			got ? got->pattern : "-", err, want ? want->pattern : "-", want_err);
		abort();
	}
	if (got != NULL && memcmp(params, want_params, sizeof params) != 0)
		abort();
	if (got == NULL && err == TOKEND_EMETHOD && allowlen == sizeof allow &&
	    strcmp(allow, want_allow) != 0)
		abort();
	if (allowlen > 0 && memchr(allow, '\0', allowlen) == NULL)
		abort(); /* Allow is always terminated within its buffer */
	free(path);
	return 0;
}
