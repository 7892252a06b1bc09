/* SPDX-License-Identifier: MIT */
/*
 * This module implements request authentication for protected routes:
 * "Authorization: Bearer <access JWT>" of an active, existing user whose
 * session has not ended, with the exact 401 bodies of API.md (simplejwt's
 * JWTAuthentication).
 */
#include <stdlib.h>
#include <string.h>

#include "handlers/auth.h"
#include "tokend/app.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/jwtsign.h"
#include "tokend/store.h"

/*
 * The 401 bodies of API.md's table. They are constant, and the refusal of a
 * bad token is a hot path (every probe with a stale token), so they are
 * kept as text rather than built as JSON trees.
 */
#define INVALID_TOKEN(msg)                                                                       \
	"{\"detail\":\"Given token not valid for any token type\",\"code\":\"token_not_valid\"," \
	"\"messages\":[{\"token_class\":\"AccessToken\",\"token_type\":\"access\","              \
	"\"message\":\"" msg "\"}]}"

static const char body_not_provided[] =
	"{\"detail\":\"Authentication credentials were not provided.\"}";
static const char body_bad_header[] =
	"{\"detail\":\"Authorization header must contain two space-delimited values\","
	"\"code\":\"bad_authorization_header\"}";
static const char body_invalid[] = INVALID_TOKEN("Token is invalid or expired");
static const char body_wrong_type[] = INVALID_TOKEN("Token has wrong type");
static const char body_not_found[] = "{\"detail\":\"User not found\",\"code\":\"user_not_found\"}";
static const char body_inactive[] = "{\"detail\":\"User is inactive\",\"code\":\"user_inactive\"}";

static int refuse(struct handler_result *res, const char *body)
{
	res->text = strdup(body);
	return res->text ? TOKEND_EAUTH : TOKEND_ENOMEM;
}

void handler_token_policy(const struct app *app, struct jwtsign_policy *pol)
{
	pol->now = util_now();
	pol->leeway = app->cfg.leeway;
	pol->issuer = app->cfg.issuer;
	pol->audience = app->cfg.audience;
	pol->full_json = false;
}

int handler_access_state(const struct app *app, const struct jwtsign_token *t,
			 enum store_session *state)
{
	struct store_user u;
	int rc;

	if (t->sid[0] != '\0')
		return store_session_state(app->store, t->sid, t->user_id, state);
	/* Minted before sessions: the user row decides. */
	rc = store_user_get_by_uuid(app->store, t->user_id, &u);
	if (rc == TOKEND_ENOTFOUND)
		*state = STORE_SESSION_NO_USER;
	else if (rc == 0)
		*state = u.is_active ? STORE_SESSION_LIVE : STORE_SESSION_INACTIVE;
	return rc == TOKEND_ENOTFOUND ? 0 : rc;
}

int handler_session_refusal(struct handler_result *res, enum store_session state)
{
	switch (state) {
	case STORE_SESSION_LIVE: return 0;
	case STORE_SESSION_NO_USER: return refuse(res, body_not_found);
	case STORE_SESSION_INACTIVE: return refuse(res, body_inactive);
	default:
		return refuse(res, body_invalid); /* logged out, or ended by passwd/disable/reuse */
	}
}

enum handler_bearer handler_bearer_parse(const char *h, const char **token, size_t *len)
{
	const char *tok;

	if (h == NULL || h[0] == '\0')
		return BEARER_MISSING;
	/* Exactly "Bearer" SP <one value>: the scheme is case-sensitive as in simplejwt. */
	if (strncmp(h, "Bearer ", 7) != 0)
		return BEARER_MALFORMED;
	tok = h + 7;
	if (tok[0] == '\0' || strchr(tok, ' ') != NULL)
		return BEARER_MALFORMED;
	*token = tok;
	*len = strlen(tok);
	return BEARER_OK;
}

int handler_bearer_token(const struct handler_ctx *ctx, struct handler_result *res, bool api,
			 struct jwtsign_token *t)
{
	struct jwtsign_policy pol;
	const char *tok = NULL;
	size_t toklen = 0;

	switch (handler_bearer_parse(ctx->authorization, &tok, &toklen)) {
	case BEARER_MISSING: return refuse(res, body_not_provided);
	case BEARER_MALFORMED: return refuse(res, body_bad_header);
	case BEARER_OK: break;
	}
	handler_token_policy(ctx->app, &pol);
	if (jwtsign_check(ctx->app->keys, tok, toklen, &pol, t, NULL) != 0)
		return refuse(res, body_invalid);
	if (strcmp(t->token_type, "access") != 0 && !(api && strcmp(t->token_type, "api") == 0))
		return refuse(res, body_wrong_type);
	return 0;
}

int handler_authenticated(struct handler_ctx *ctx, struct handler_result *res, handler_fn fn)
{
	enum store_session state = STORE_SESSION_ENDED;
	struct jwtsign_token t;
	int rc;

	rc = handler_bearer_token(ctx, res, false, &t);
	if (rc != 0)
		return rc;
	/* The user check and the route's lookups read one snapshot. */
	rc = store_read_begin(ctx->app->store);
	if (rc != 0)
		return rc;
	rc = handler_access_state(ctx->app, &t, &state);
	if (rc == 0)
		rc = handler_session_refusal(res, state);
	if (rc == 0) {
		memcpy(ctx->user_uuid, t.user_id, UUID_STR_LEN);
		rc = fn(ctx, res);
	}
	store_read_end(ctx->app->store);
	return rc;
}
