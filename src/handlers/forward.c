/* SPDX-License-Identifier: MIT */
/*
 * This module implements forward authentication (GET /api/auth/forward/,
 * API.md "Around the six routes") for nginx auth_request, Traefik
 * ForwardAuth and Caddy forward_auth, and the checked response headers
 * that carry its answer. It reads only "Authorization: Bearer <token>"
 * and costs what verify costs plus the username: one token check, then in
 * one read snapshot the revocation lookup verify makes (the session of an
 * access token, the row and membership of an API token) and the user row.
 * A refresh token is never accepted: it is a credential for one route, and
 * a proxy that let it through would make it a long-lived access token.
 */
#include <openssl/crypto.h>
#include <string.h>

#include "tokend/app.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/jwtsign.h"
#include "tokend/store.h"

/* The 401 bodies of API.md's table, as auth.c sends them. */
static const char body_not_provided[] =
	"{\"detail\":\"Authentication credentials were not provided.\"}";
static const char body_bad_header[] =
	"{\"detail\":\"Authorization header must contain two space-delimited values\","
	"\"code\":\"bad_authorization_header\"}";
static const char body_invalid[] =
	"{\"detail\":\"Given token not valid for any token type\",\"code\":\"token_not_valid\","
	"\"messages\":[{\"token_class\":\"AccessToken\",\"token_type\":\"access\","
	"\"message\":\"Token is invalid or expired\"}]}";
static const char body_wrong_type[] =
	"{\"detail\":\"Given token not valid for any token type\",\"code\":\"token_not_valid\","
	"\"messages\":[{\"token_class\":\"AccessToken\",\"token_type\":\"access\","
	"\"message\":\"Token has wrong type\"}]}";
static const char body_not_found[] = "{\"detail\":\"User not found\",\"code\":\"user_not_found\"}";
static const char body_inactive[] = "{\"detail\":\"User is inactive\",\"code\":\"user_inactive\"}";

bool handler_header_add(struct handler_result *res, const char *name, const char *value)
{
	size_t n = strnlen(value, HANDLER_HEADER_VALUE_MAX);

	if (res->n_headers >= HANDLER_HEADERS_MAX || n == 0 || n >= HANDLER_HEADER_VALUE_MAX ||
	    value[0] == ' ' || value[n - 1] == ' ')
		return false;
	/* RFC 9110 5.5: VCHAR, obs-text and inner SP; no CTL (HTAB included:
	 * proxies disagree on it). */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	res->headers[res->n_headers].name = name;
	memcpy(res->headers[res->n_headers].value, value, n + 1);
	res->n_headers++;
	return true;
}

static int refuse(struct handler_result *res, const char *body)
{
	res->text = strdup(body);
	return res->text ? TOKEND_EAUTH : TOKEND_ENOMEM;
}

/* The revocation checks of verify, and the user row; in one snapshot. */
static int live_user(const struct app *app, const struct jwtsign_token *t, bool api,
		     struct store_user *u, const char **refusal)
{
	enum store_session state = STORE_SESSION_LIVE;
	bool live = true;
	int rc;

	*refusal = NULL;
	if (api)
		rc = store_api_token_live(app->store, t->jti, t->user_id, t->team_uuid, &live);
	else if (t->sid[0] != '\0')
		rc = store_session_state(app->store, t->sid, t->user_id, &state);
	else
		rc = 0; /* minted before sessions: the user row decides */
	if (rc != 0)
		return rc;
	if (!live || state == STORE_SESSION_ENDED) {
		*refusal = body_invalid;
		return 0;
	}
	rc = store_user_get_by_uuid(app->store, t->user_id, u);
	if (rc == TOKEND_ENOTFOUND || state == STORE_SESSION_NO_USER) {
		*refusal = body_not_found;
		return 0;
	}
	if (rc != 0)
		return rc;
	if (!u->is_active || state == STORE_SESSION_INACTIVE)
		*refusal = body_inactive;
	return 0;
}

int handler_forward_auth(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	const char *h = ctx->authorization;
	const char *refusal;
	struct jwtsign_policy pol;
	struct jwtsign_token t;
	struct store_user u;
	const char *tok;
	bool api;
	int rc;

	if (h == NULL || h[0] == '\0')
		return refuse(res, body_not_provided);
	/* Exactly "Bearer" SP <one value>, as handler_authenticated(). */
	tok = h + 7;
	if (strncmp(h, "Bearer ", 7) != 0 || tok[0] == '\0' || strchr(tok, ' ') != NULL)
		return refuse(res, body_bad_header);
	handler_token_policy(app, &pol);
	if (jwtsign_check(app->keys, tok, strlen(tok), &pol, &t, NULL) != 0)
		return refuse(res, body_invalid);
	api = strcmp(t.token_type, "api") == 0;
	if (!api && strcmp(t.token_type, "access") != 0)
		return refuse(res, body_wrong_type);
	rc = store_read_begin(app->store);
	if (rc != 0)
		return rc;
	memset(&u, 0, sizeof(u));
	rc = live_user(app, &t, api, &u, &refusal);
	store_read_end(app->store);
	OPENSSL_cleanse(u.password, sizeof(u.password));
	if (rc != 0)
		return rc;
	if (refusal != NULL)
		return refuse(res, refusal);
	res->body = json_object();
	if (res->body == NULL)
		return TOKEND_ENOMEM;
	res->no_store = true;
	/* uuids and the type are safe by construction; a username may not be. */
	handler_header_add(res, "X-Auth-User-Id", t.user_id);
	handler_header_add(res, "X-Auth-Username", u.username);
	handler_header_add(res, "X-Auth-Token-Type", t.token_type);
	if (api)
		handler_header_add(res, "X-Auth-Team", t.team_uuid);
	return 0;
}
