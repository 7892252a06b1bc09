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

#include "handlers/auth.h"
#include "tokend/app.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/jwtsign.h"
#include "tokend/store.h"

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

int handler_forward_auth(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	enum store_session state = STORE_SESSION_ENDED;
	struct jwtsign_token t;
	struct store_user u;
	bool api, live = false;
	int rc;

	rc = handler_bearer_token(ctx, res, true, &t);
	if (rc != 0)
		return rc;
	api = strcmp(t.token_type, "api") == 0;
	memset(&u, 0, sizeof(u));
	/* verify's revocation check, then the user row for its name; one snapshot */
	rc = store_read_begin(app->store);
	if (rc != 0)
		return rc;
	if (api) {
		/* (joins the user, active, and the membership) */
		rc = store_api_token_live(app->store, t.jti, t.user_id, t.team_uuid, &live);
		state = live ? STORE_SESSION_LIVE : STORE_SESSION_ENDED;
	} else {
		rc = handler_access_state(app, &t, &state);
	}
	if (rc == 0 && state == STORE_SESSION_LIVE) {
		rc = store_user_get_by_uuid(app->store, t.user_id, &u);
		if (rc == TOKEND_ENOTFOUND) { /* deleted between the two reads */
			state = STORE_SESSION_NO_USER;
			rc = 0;
		}
	}
	store_read_end(app->store);
	OPENSSL_cleanse(u.password, sizeof(u.password));
	if (rc == 0)
		rc = handler_session_refusal(res, state);
	if (rc != 0)
		return rc;
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
