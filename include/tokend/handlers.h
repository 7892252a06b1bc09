/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract between the HTTP layer and the route handlers.
 * A handler receives a request context and fills a result; it never calls
 * libmicrohttpd, never writes SQL and never picks an HTTP status: it returns
 * 0 (the route's success status) or a negative enum tokend_err, which
 * src/http/response.c maps to a status.
 */
#ifndef TOKEND_HANDLERS_H
#define TOKEND_HANDLERS_H

#include <jansson.h>
#include <stdbool.h>

#include "tokend/util.h"

struct app;

#define HANDLER_MAX_PARAMS 2
#define HANDLER_PARAM_MAX 64

struct handler_ctx {
	const struct app *app;
	char params[HANDLER_MAX_PARAMS][HANDLER_PARAM_MAX]; /* {captures} of the pattern */
	const json_t *body;           /* decoded body; an empty object when none */
	const char *authorization;    /* the header, or NULL; never log it */
	const char *remote;           /* client address, for logs */
	char user_uuid[UUID_STR_LEN]; /* set by handler_authenticated() on auth routes */
};

/* Response headers a handler may set: a few, each value copied. */
#define HANDLER_HEADERS_MAX 4
#define HANDLER_HEADER_VALUE_MAX 256

struct handler_header {
	const char *name;                     /* a constant token */
	char value[HANDLER_HEADER_VALUE_MAX]; /* checked by handler_header_add() */
};

struct handler_result;
typedef int (*handler_fn)(const struct handler_ctx *ctx, struct handler_result *res);

/*
 * An authenticator, named by a route that needs one (struct route's auth):
 * checks the caller, then runs fn or answers for it (handler_authenticated).
 */
typedef int (*handler_auth_fn)(struct handler_ctx *ctx, struct handler_result *res, handler_fn fn);

struct handler_result {
	json_t *body;             /* owned by the result; the HTTP layer sends and frees it */
	char *text;               /* or: JSON text already serialised (malloc'd, owned) */
	bool no_store;            /* carries credentials: Cache-Control: no-store */
	const char *content_type; /* constant; NULL = application/json */
	int retry_after;          /* seconds, with TOKEND_EBUSY; 0 = none */
	/*
	 * Set by a handler that returns 0 but has slow work left (a password
	 * hash): the HTTP layer suspends the connection and calls it on the
	 * worker pool with the same ctx; its return is the final one. Cheap
	 * refusals (field errors) thus never wait for a worker.
	 */
	handler_fn slow;
	/*
	 * Optional, with slow: called instead of slow (on whichever thread
	 * finds out) when the slow part will never run -- the queue was full,
	 * its deadline passed, or the server is stopping -- so that the fast
	 * part can release what it reserved (login: its throttle counts) and
	 * count the refusal (login: outcome queue_full).
	 */
	void (*cancel)(const struct handler_ctx *ctx);
	/* Sent with a successful answer only (rc 0), after the fixed headers. */
	struct handler_header headers[HANDLER_HEADERS_MAX];
	unsigned n_headers;
};

/*
 * Adds header name (a constant token) with a copy of value to res. Returns
 * false and adds nothing when res has HANDLER_HEADERS_MAX already, or when
 * value cannot be sent as it is: empty, HANDLER_HEADER_VALUE_MAX bytes or
 * more, a control character (CR, LF, NUL, HTAB, DEL, ...), or a space at
 * either end (a parser would strip it, and another name would arrive). A
 * value is never escaped or cut: the receiver acts on it as the identity.
 */
bool handler_header_add(struct handler_result *res, const char *name, const char *value);

struct jwtsign_policy;

/*
 * The policy every route checks tokens with: now, and the configured
 * leeway, issuer and audience.
 */
void handler_token_policy(const struct app *app, struct jwtsign_policy *pol);

/* What an Authorization header holds, for handler_authenticated(). */
enum handler_bearer {
	BEARER_OK,        /* "Bearer" SP and one value */
	BEARER_MISSING,   /* no header, or an empty one: credentials not provided */
	BEARER_MALFORMED, /* anything else: bad_authorization_header */
};

/*
 * Parses an Authorization header value as libmicrohttpd hands it over
 * (NUL-terminated; NULL when absent): exactly "Bearer" SP and one non-empty
 * value without spaces, the scheme case-sensitive as in simplejwt. On
 * BEARER_OK, *token points into header and *len is its length.
 */
enum handler_bearer handler_bearer_parse(const char *header, const char **token, size_t *len);

/*
 * Runs fn, the handler of a route whose auth names this function, for an
 * authenticated caller:
 * requires "Authorization: Bearer <access token>" of an active, existing
 * user (one store lookup), sets ctx->user_uuid and calls fn, the user check
 * and fn's lookups in one store read snapshot (store_read_begin). Otherwise
 * fills the 401 body of API.md's table and returns TOKEND_EAUTH.
 */
int handler_authenticated(struct handler_ctx *ctx, struct handler_result *res, handler_fn fn);

/* POST /api/auth/jwt/ — obtain a pair; the password hash is slow work. */
int handler_jwt_obtain(const struct handler_ctx *ctx, struct handler_result *res);

/* POST /api/auth/jwt/refresh/ — rotate a refresh token (reuse revokes its family). */
int handler_jwt_refresh(const struct handler_ctx *ctx, struct handler_result *res);

/* POST /api/auth/jwt/blacklist/ — log out: end the session of a refresh token. */
int handler_jwt_blacklist(const struct handler_ctx *ctx, struct handler_result *res);

/* POST /api/auth/jwt/verify/ — is this a live token of ours? */
int handler_jwt_verify(const struct handler_ctx *ctx, struct handler_result *res);

/*
 * GET /api/auth/forward/ — forward authentication for a reverse proxy: a
 * live access token or API token of an active user in "Authorization:
 * Bearer" answers 200 with X-Auth-User-Id, X-Auth-Username (left out when
 * it cannot be a header value), X-Auth-Token-Type and, for an API token,
 * X-Auth-Team; anything else 401.
 */
int handler_forward_auth(const struct handler_ctx *ctx, struct handler_result *res);

/* GET /.well-known/jwks.json — the public keys (RS256/ES256) as a JWKS. */
int handler_jwks(const struct handler_ctx *ctx, struct handler_result *res);

/* GET /api/openapi/token/{team}/ — the caller's live API tokens, newest first. */
int handler_api_tokens_list(const struct handler_ctx *ctx, struct handler_result *res);

/* POST /api/openapi/token/{team}/ — issue an API token. */
int handler_api_tokens_issue(const struct handler_ctx *ctx, struct handler_result *res);

/* POST /api/openapi/token/{team}/delete/ — delete API tokens by id or string. */
int handler_api_tokens_delete(const struct handler_ctx *ctx, struct handler_result *res);

/* GET /healthz — 200 {"status": "ok"} while the process serves. */
int handler_healthz(const struct handler_ctx *ctx, struct handler_result *res);

/*
 * GET /readyz — 200 {"status": "ready"} when the store answers promptly
 * (store_ping) and a signing key is loaded, else 503 {"status":
 * "unavailable", "reason": <a short constant>}.
 */
int handler_readyz(const struct handler_ctx *ctx, struct handler_result *res);

/*
 * GET /metrics — the Prometheus text format (metrics_render) for a client
 * address in [metrics] allowed, with metrics enabled; else the JSON 404.
 */
int handler_metrics(const struct handler_ctx *ctx, struct handler_result *res);

/* GET /api/openapi.json: docs/openapi.yaml as JSON, embedded at build time. */
int handler_openapi(const struct handler_ctx *ctx, struct handler_result *res);

#endif
