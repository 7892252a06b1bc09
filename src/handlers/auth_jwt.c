/* SPDX-License-Identifier: MIT */
/*
 * This module implements the /api/auth/jwt/ route family of API.md. Login
 * (handler_jwt_obtain) runs on the worker pool because of the password hash:
 * an unknown user costs the same hash as a wrong password, and an inactive
 * user is refused only after the hash, so body and timing never tell which
 * usernames exist.
 */
#include <assert.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/app.h"
#include "tokend/body.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/jwtsign.h"
#include "tokend/log.h"
#include "tokend/password.h"
#include "tokend/store.h"

static const char no_account[] = "No active account found with the given credentials";

/* Mints an access + refresh pair for user; records the refresh jti. */
static int issue_pair(const struct app *app, const char *user_uuid, json_t **out)
{
	char access_jti[UUID_STR_LEN];
	char refresh_jti[UUID_STR_LEN];
	char *access = NULL;
	char *refresh = NULL;
	int64_t now = util_now();
	struct jwtsign_claims c = {.user_id = user_uuid, .iat = now};
	int rc;

	util_uuid_new(access_jti);
	util_uuid_new(refresh_jti);
	c.token_type = "refresh";
	c.jti = refresh_jti;
	c.exp = now + app->cfg.refresh_lifetime;
	rc = jwtsign_mint(app->keys, &c, &refresh);
	if (rc != 0)
		goto out;
	c.token_type = "access";
	c.jti = access_jti;
	c.exp = now + app->cfg.access_lifetime;
	rc = jwtsign_mint(app->keys, &c, &access);
	if (rc != 0)
		goto out;
	/* A login starts a refresh family named by its first refresh jti. */
	rc = store_login_record(app->store, user_uuid, refresh_jti, refresh_jti, now,
				now + app->cfg.refresh_lifetime);
	if (rc != 0)
		goto out;
	*out = json_pack("{s:s, s:s}", "refresh", refresh, "access", access);
	rc = *out ? 0 : TOKEND_ENOMEM;
out:
	free(access);
	free(refresh);
	return rc;
}

/* Re-hashes a password whose stored hash is weaker than configured. */
static void upgrade_hash(const struct app *app, const struct store_user *u, const char *pw,
			 size_t pwlen)
{
	char hash[PASSWORD_HASH_MAX];

	if (password_hash(pw, pwlen, app->cfg.pbkdf2_iterations, hash, sizeof(hash)) == 0 &&
	    store_user_set_password(app->store, u->uuid, hash) == 0)
		log_info("auth: upgraded the password hash of user %s", u->uuid);
	OPENSSL_cleanse(hash, sizeof(hash));
}

/* Reads username and password; NULL username after adding field errors. */
static const char *login_fields(const struct handler_ctx *ctx, json_t *errors, size_t *namelen,
				const char **pw, size_t *pwlen)
{
	size_t max = (size_t)ctx->app->cfg.max_string;
	const char *name = body_string_field(ctx->body, "username", true, max, errors, namelen);

	*pw = body_string_field(ctx->body, "password", false, max, errors, pwlen);
	return *pw ? name : NULL;
}

/* The slow part of login, on the worker pool: lookup, hash, tokens. */
static int jwt_obtain_slow(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	json_t *errors = json_object();
	const char *name, *pw;
	size_t namelen = 0, pwlen = 0;
	char username[STORE_NAME_MAX + 1];
	struct store_user user;
	bool found = false, ok = false, rehash = false;
	int rc = TOKEND_ENOMEM;

	memset(&user, 0, sizeof(user));
	if (errors == NULL)
		return rc;
	name = login_fields(ctx, errors, &namelen, &pw, &pwlen);
	assert(name != NULL); /* validated by handler_jwt_obtain */
	if (namelen <= STORE_NAME_MAX) {
		memcpy(username, name, namelen);
		username[namelen] = '\0';
		rc = store_user_get_by_name(app->store, username, &user);
		if (rc != 0 && rc != TOKEND_ENOTFOUND)
			goto out;
		found = rc == 0;
	}
	/* Unknown users cost the same hash; inactive ones are refused after it. */
	if (found)
		ok = password_verify(pw, pwlen, user.password, app->cfg.pbkdf2_iterations, &rehash);
	else
		password_verify_dummy(pw, pwlen, app->cfg.pbkdf2_iterations);
	if (!ok || !user.is_active) {
		res->body = json_pack("{s:s}", "detail", no_account);
		rc = TOKEND_EAUTH;
		goto out;
	}
	if (rehash)
		upgrade_hash(app, &user, pw, pwlen);
	rc = issue_pair(app, user.uuid, &res->body);
	if (rc == TOKEND_ENOTFOUND) { /* deleted while we hashed */
		res->body = json_pack("{s:s}", "detail", no_account);
		rc = TOKEND_EAUTH;
	}
	res->no_store = true;
out:
	OPENSSL_cleanse(&user, sizeof(user));
	json_decref(errors);
	return rc;
}

int handler_jwt_obtain(const struct handler_ctx *ctx, struct handler_result *res)
{
	json_t *errors;
	const char *pw;
	size_t namelen = 0, pwlen = 0;
	int rc;

	rc = body_require_object(ctx->body, &res->body);
	if (rc != 0)
		return rc;
	errors = json_object();
	if (errors == NULL)
		return TOKEND_ENOMEM;
	if (login_fields(ctx, errors, &namelen, &pw, &pwlen) == NULL) {
		res->body = errors;
		return TOKEND_EINVAL;
	}
	json_decref(errors);
	res->slow = jwt_obtain_slow;
	return 0;
}
