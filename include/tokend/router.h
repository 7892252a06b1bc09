/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the route table: method + path pattern to
 * handler. Patterns are literal segments and "{name}" captures; a trailing
 * slash is optional on every route. Paths are matched as received (not
 * percent-decoded), so "%00" or "%2F" never reach a handler.
 */
#ifndef TOKEND_ROUTER_H
#define TOKEND_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "tokend/handlers.h"

struct route {
	const char *method;  /* "GET", "POST" */
	const char *pattern; /* "/api/auth/jwt/" */
	handler_fn fn;
	unsigned ok_status;   /* status when fn returns 0 */
	handler_auth_fn auth; /* NULL = public; else fn runs through it (a Bearer
			       * access token: handler_authenticated) */
};

/*
 * Finds the route for method and path. On a match returns it and copies the
 * captures into params. Otherwise returns NULL with *err TOKEND_ENOTFOUND,
 * or TOKEND_EMETHOD when the path exists for other methods; then allow gets
 * them, comma-separated ("POST" or "GET, HEAD, POST"). HEAD matches the GET
 * route of a path, and Allow lists HEAD wherever it lists GET.
 */
const struct route *router_match(const char *method, const char *path,
				 char params[][HANDLER_PARAM_MAX], char *allow, size_t allowlen,
				 int *err);

/* The route table (count entries, static), in match order. */
const struct route *router_routes(size_t *count);
/* r's index in router_routes() (its count for NULL): the metrics' route label. */
size_t router_index(const struct route *r);

#endif
