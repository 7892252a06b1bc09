/* SPDX-License-Identifier: MIT */
/*
 * This module implements the route table: each entry says method, pattern,
 * handler, success status, the authenticator it runs through (NULL for a
 * public route) and its body limit. A GET route answers HEAD too. The
 * dispatcher runs what an entry names; it knows no handler itself.
 */
#include "tokend/router.h"

#include <stdio.h>
#include <string.h>

#include "tokend/err.h"

/* No route has OPTIONS: a CORS preflight is granted from the methods that
 * router_match lists for it (src/http/server.c, cors_preflight). */
static const struct route routes[] = {
	{"POST", "/api/auth/jwt/", handler_jwt_obtain, 201, NULL},
	{"POST", "/api/auth/jwt/refresh/", handler_jwt_refresh, 201, NULL},
	{"POST", "/api/auth/jwt/verify/", handler_jwt_verify, 201, NULL},
	{"POST", "/api/auth/jwt/blacklist/", handler_jwt_blacklist, 200, NULL},
	{"GET", "/.well-known/jwks.json", handler_jwks, 200, NULL},
	/* No authenticator: it takes API tokens too, and answers for the proxy. */
	{"GET", "/api/auth/forward/", handler_forward_auth, 200, NULL},
	{"GET", "/api/openapi/token/{team}/", handler_api_tokens_list, 200, handler_authenticated},
	{"POST", "/api/openapi/token/{team}/", handler_api_tokens_issue, 201,
	 handler_authenticated},
	{"POST", "/api/openapi/token/{team}/delete/", handler_api_tokens_delete, 200,
	 handler_authenticated},
	{"GET", "/healthz", handler_healthz, 200, NULL},
	{"GET", "/readyz", handler_readyz, 200, NULL},
	{"GET", "/metrics", handler_metrics, 200, NULL},
	{"GET", "/api/openapi.json", handler_openapi, 200, NULL},
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

size_t router_index(const struct route *r)
{
	return r != NULL && r >= routes && r < routes + N_ROUTES ? (size_t)(r - routes) : N_ROUTES;
}

/*
 * Matches path against pattern segment by segment; a trailing slash is
 * optional on the path (either way round), an empty segment anywhere else
 * never matches.
 */
static bool pattern_match(const char *pattern, const char *path, char params[][HANDLER_PARAM_MAX])
{
	size_t np = 0;

	while (*pattern != '\0') {
		if (*pattern == '{') {
			const char *close = strchr(pattern, '}');
			size_t seg = strcspn(path, "/");
			if (close == NULL || seg == 0 || seg >= HANDLER_PARAM_MAX ||
			    np >= HANDLER_MAX_PARAMS)
				return false;
			if (params != NULL) {
				memcpy(params[np], path, seg);
				params[np][seg] = '\0';
			}
			np++;
			path += seg;
			pattern = close + 1;
			continue;
		}
		if (*pattern != *path) {
			/* "/api/auth/jwt" matches "/api/auth/jwt/". */
			return *path == '\0' && pattern[0] == '/' && pattern[1] == '\0';
		}
		pattern++;
		path++;
	}
	/* "/.well-known/jwks.json/" matches "/.well-known/jwks.json" too. */
	return *path == '\0' || (path[0] == '/' && path[1] == '\0' && path[-1] != '/');
}

/* RFC 9110 9.3.2: HEAD is GET without the body (which libmicrohttpd leaves
 * out of a HEAD's answer itself). */
static bool method_matches(const char *route_method, const char *method)
{
	return strcmp(route_method, method) == 0 ||
	       (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

const struct route *router_match(const char *method, const char *path,
				 char params[][HANDLER_PARAM_MAX], char *allow, size_t allowlen,
				 int *err)
{
	bool path_known = false;
	size_t used = 0;

	if (allowlen > 0)
		allow[0] = '\0';
	for (size_t i = 0; i < N_ROUTES; i++) {
		if (!pattern_match(routes[i].pattern, path, NULL))
			continue;
		if (method_matches(routes[i].method, method)) {
			pattern_match(routes[i].pattern, path, params);
			*err = 0;
			return &routes[i];
		}
		path_known = true;
		if (used < allowlen) {
			bool get = strcmp(routes[i].method, "GET") == 0;
			int n = snprintf(allow + used, allowlen - used, "%s%s%s", used ? ", " : "",
					 routes[i].method, get ? ", HEAD" : "");
			if (n > 0)
				used += (size_t)n;
		}
	}
	*err = path_known ? TOKEND_EMETHOD : TOKEND_ENOTFOUND;
	return NULL;
}

const struct route *router_routes(size_t *count)
{
	*count = N_ROUTES;
	return routes;
}
