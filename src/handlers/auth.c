/* SPDX-License-Identifier: MIT */
/*
 * This module implements request authentication for protected routes:
 * "Authorization: Bearer <access JWT>" of an active, existing user, with the
 * exact 401 bodies of API.md (simplejwt's JWTAuthentication).
 */
#include <string.h>

#include "tokend/app.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/jwtsign.h"
#include "tokend/store.h"

static int refuse(struct handler_result *res, json_t *body)
{
	res->body = body;
	return TOKEND_EAUTH;
}

static int token_refused(struct handler_result *res, const char *message)
{
	return refuse(res, json_pack("{s:s, s:s, s:[{s:s, s:s, s:s}]}", "detail",
				     "Given token not valid for any token type", "code",
				     "token_not_valid", "messages", "token_class", "AccessToken",
				     "token_type", "access", "message", message));
}

int handler_authenticate(struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	const char *h = ctx->authorization;
	struct jwtsign_policy pol = {
		.now = util_now(),
		.leeway = app->cfg.leeway,
		.issuer = app->cfg.issuer,
		.audience = app->cfg.audience,
	};
	struct jwtsign_token t;
	struct store_user u;
	const char *tok;
	int rc;

	if (h == NULL || h[0] == '\0')
		return refuse(res, json_pack("{s:s}", "detail",
					     "Authentication credentials were not provided."));
	/* Exactly "Bearer" SP <one value>: the scheme is case-sensitive as in simplejwt. */
	tok = h + 7;
	if (strncmp(h, "Bearer ", 7) != 0 || tok[0] == '\0' || strchr(tok, ' ') != NULL)
		return refuse(res, json_pack("{s:s, s:s}", "detail",
					     "Authorization header must contain two "
					     "space-delimited values",
					     "code", "bad_authorization_header"));
	if (jwtsign_check(app->keys, tok, strlen(tok), &pol, &t, NULL) != 0)
		return token_refused(res, "Token is invalid or expired");
	if (strcmp(t.token_type, "access") != 0)
		return token_refused(res, "Token has wrong type");
	rc = store_user_get_by_uuid(app->store, t.user_id, &u);
	if (rc == TOKEND_ENOTFOUND)
		return refuse(res, json_pack("{s:s, s:s}", "detail", "User not found", "code",
					     "user_not_found"));
	if (rc != 0)
		return rc;
	if (!u.is_active)
		return refuse(res, json_pack("{s:s, s:s}", "detail", "User is inactive", "code",
					     "user_inactive"));
	memcpy(ctx->user_uuid, t.user_id, UUID_STR_LEN);
	return 0;
}
