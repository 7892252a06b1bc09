/* SPDX-License-Identifier: MIT */
/*
 * This module implements the /api/openapi/token/{team_uuid}/ routes: list,
 * issue and delete per-team API tokens. The caller is authenticated before
 * these run (handler_authenticated); each checks team membership itself.
 * The store keeps a token as a SHA-256 digest plus the claims needed to mint
 * it again, never as its string: the list re-mints each token with the key
 * that signed it, byte-identical for HS256 and RS256.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/fields.h"
#include "handlers/list_cache.h"
#include "tokend/app.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/jwtsign.h"
#include "tokend/metrics.h"
#include "tokend/store.h"

#define DELETE_MAX 1000 /* entries in one delete request */

static const char forbidden[] = "You do not have permission to perform this action.";

/*
 * The {team} of the path: a malformed uuid is 404, a team that does not
 * exist or of which the caller is not a member is 403 (not told apart).
 */
static int team_check(const struct handler_ctx *ctx, struct handler_result *res)
{
	const char *team = ctx->params[0];
	bool member = false;
	int rc;

	if (!util_uuid_valid(team)) {
		res->body = json_pack("{s:s}", "detail", "Not found.");
		return TOKEND_ENOTFOUND;
	}
	rc = store_team_is_member(ctx->app->store, team, ctx->user_uuid, &member);
	if (rc != 0)
		return rc;
	if (!member) {
		res->body = json_pack("{s:s}", "detail", forbidden);
		return TOKEND_EFORBIDDEN;
	}
	return 0;
}

/*
 * The claims of a stored token, to mint it (again) with the key that signed
 * it; iss and aud are the policy's.
 */
static struct jwtsign_claims claims_of(const struct app *app, const struct store_api_token *t)
{
	struct jwtsign_policy pol;
	struct jwtsign_claims c;

	handler_token_policy(app, &pol);
	c = (struct jwtsign_claims){
		.token_type = "api",
		.jti = t->jti,
		.user_id = t->user_uuid,
		.team_uuid = t->team_uuid,
		.iat = t->issued_at,
		.exp = t->expires_at,
		.kid = t->kid,
		.issuer = pol.issuer,
		.audience = pol.audience,
	};
	return c;
}

/*
 * Appends the wire form of a stored token to b. issued is the string just
 * minted, or NULL to mint it again from the stored claims (the list).
 * Built as text: listing is the hot path, and every value but the name is
 * made of characters JSON needs no escape for.
 */
static int token_json(const struct app *app, const struct store_api_token *t, const char *issued,
		      struct util_buf *b)
{
	struct jwtsign_claims c = claims_of(app, t);
	char times[3][RFC3339_LEN];
	char *tok = NULL;
	int rc = 0;

	if (issued == NULL) {
		rc = jwtsign_mint(app->keys, &c, &tok);
		if (rc != 0)
			return rc;
	}
	util_time_rfc3339(t->issued_at, times[0]);
	util_time_rfc3339(t->updated_at, times[1]);
	util_time_rfc3339(t->expires_at, times[2]);
	util_buf_puts(b, "{\"access_token\":\"");
	util_buf_puts(b, issued ? issued : tok);
	util_buf_puts(b, "\",\"token_issuer_uuid\":\"");
	util_buf_puts(b, t->jti);
	util_buf_puts(b, "\",\"created_at\":\"");
	util_buf_puts(b, times[0]);
	util_buf_puts(b, "\",\"updated_at\":\"");
	util_buf_puts(b, times[1]);
	util_buf_puts(b, "\",\"expires_at\":\"");
	util_buf_puts(b, times[2]);
	util_buf_puts(b, "\",\"name\":");
	util_buf_json_string(b, t->name[0] ? t->name : NULL);
	util_buf_puts(b, "}");
	free(tok);
	return b->failed ? TOKEND_ENOMEM : 0;
}

struct list_ctx {
	const struct app *app;
	struct util_buf *b;
	size_t count;
	int64_t valid_until; /* the earliest expiry listed */
	int rc;
};

static int list_one(const struct store_api_token *t, void *arg)
{
	struct list_ctx *lc = arg;
	size_t mark = lc->b->len;
	int rc;

	if (lc->count > 0)
		util_buf_puts(lc->b, ",");
	rc = token_json(lc->app, t, NULL, lc->b);
	if (rc == TOKEND_ENOTFOUND) {
		/* Its key was retired: the token cannot be used any more. */
		lc->b->len = mark;
		return 0;
	}
	if (rc != 0) {
		lc->rc = rc;
		return 1;
	}
	if (t->expires_at < lc->valid_until)
		lc->valid_until = t->expires_at;
	lc->count++;
	return 0;
}

/*
 * The listing: from this thread's cache (list_cache.h) while the store's
 * version of the caller's tokens in the team, the keys and every listed
 * expiry say it is still what a fresh listing would be. The version is
 * read before the tokens, so a change in between only makes the kept
 * copy look older than it is.
 */
int handler_api_tokens_list(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	const char *team = ctx->params[0];
	struct util_buf b = {0};
	struct list_ctx lc = {.app = app, .b = &b, .valid_until = INT64_MAX};
	struct list_cache_key key = {.user_uuid = ctx->user_uuid, .team_uuid = team};
	int64_t now = util_now();
	bool member = false;
	int rc;

	if (!util_uuid_valid(team)) {
		res->body = json_pack("{s:s}", "detail", "Not found.");
		return TOKEND_ENOTFOUND;
	}
	key.keys_gen = jwtsign_keys_generation(app->keys);
	rc = store_api_token_version(app->store, team, ctx->user_uuid, &member, &key.version);
	if (rc != 0)
		return rc;
	if (!member) {
		res->body = json_pack("{s:s}", "detail", forbidden);
		return TOKEND_EFORBIDDEN;
	}
	res->no_store = true;
	res->text = list_cache_get(&key, now);
	if (res->text != NULL)
		return 0;
	util_buf_puts(&b, "{\"tokens\":[");
	rc = store_api_token_list(app->store, ctx->user_uuid, team, now, list_one, &lc);
	if (rc == 0)
		rc = lc.rc;
	util_buf_puts(&b, "]}");
	if (rc == 0 && b.failed)
		rc = TOKEND_ENOMEM;
	if (rc != 0) {
		free(b.p);
		return rc;
	}
	list_cache_put(&key, lc.valid_until, b.p, b.len);
	res->text = b.p;
	return 0;
}

/* Reads the optional expires_at; adds a field error and returns EINVAL. */
static int read_expiry(const struct handler_ctx *ctx, int64_t now, int64_t *exp, json_t *errors)
{
	const struct config *cfg = &ctx->app->cfg;
	const json_t *v = field_get(ctx->body, "expires_at");
	const char *msg = NULL;
	int64_t t;

	*exp = now + (cfg->api_lifetime < cfg->api_max_lifetime ? cfg->api_lifetime
								: cfg->api_max_lifetime);
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || util_time_parse_rfc3339(json_string_value(v), &t) != 0)
		msg = "Datetime has wrong format. Use one of these formats instead: "
		      "YYYY-MM-DDThh:mm:ss[.uuuuuu](Z|+HH:MM|-HH:MM).";
	else if (t <= now)
		msg = "Ensure this value is in the future.";
	else if (t > now + cfg->api_max_lifetime)
		msg = "Ensure this value is no later than the maximum token lifetime from now.";
	if (msg != NULL) {
		json_object_set_new(errors, "expires_at", json_pack("[s]", msg));
		return TOKEND_EINVAL;
	}
	*exp = t;
	return 0;
}

int handler_api_tokens_issue(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	struct store_api_token t;
	struct jwtsign_claims c;
	json_t *errors = NULL;
	const json_t *name;
	char *tok = NULL;
	int rc;

	rc = team_check(ctx, res);
	if (rc == 0)
		rc = field_require_object(ctx->body, &res->body);
	if (rc != 0)
		return rc;
	errors = json_object();
	if (errors == NULL)
		return TOKEND_ENOMEM;
	memset(&t, 0, sizeof(t));
	t.issued_at = t.updated_at = util_now();
	(void)read_expiry(ctx, t.issued_at, &t.expires_at, errors);
	name = field_get(ctx->body, "name");
	if (name != NULL && !json_is_null(name)) {
		size_t len = 0;
		const char *s = field_string(ctx->body, "name", true, STORE_NAME_MAX, errors, &len);
		if (s != NULL) {
			memcpy(t.name, s, len);
			t.name[len] = '\0';
		}
	}
	if (json_object_size(errors) > 0) {
		res->body = errors;
		return TOKEND_EINVAL;
	}
	json_decref(errors);
	if (util_uuid_new(t.jti) != 0)
		return TOKEND_ECRYPTO;
	memcpy(t.user_uuid, ctx->user_uuid, UUID_STR_LEN);
	memcpy(t.team_uuid, ctx->params[0], UUID_STR_LEN);
	jwtsign_signing_kid(app->keys, t.kid);
	c = claims_of(app, &t);
	rc = jwtsign_mint(app->keys, &c, &tok);
	if (rc != 0)
		return rc;
	/* The answer is written before the insert: a token whose answer cannot be
	 * sent (out of memory) is never recorded. */
	struct util_buf b = {0};
	rc = token_json(app, &t, tok, &b);
	if (rc == 0)
		rc = store_api_token_add(app->store, &t, tok, app->cfg.api_max_tokens);
	if (rc == TOKEND_ECONFLICT) {
		char msg[128];
		snprintf(msg, sizeof(msg), "Token limit reached: at most %ld live tokens per team.",
			 app->cfg.api_max_tokens);
		res->body = json_pack("{s:s, s:s}", "detail", msg, "code", "token_limit");
	} else if (rc == 0) {
		metrics_api_tokens_issued(1);
		res->text = b.p;
		b.p = NULL;
		res->no_store = true;
	}
	free(b.p);
	free(tok);
	return rc;
}

/*
 * Collects the distinct strings of the list field name into seen (up to
 * DELETE_MAX + 1 in all) and adds the entries as sent to *sent; a non-list
 * or a non-string entry is a field error in DRF's shape
 * ({"name": {"3": ["Not a valid string."]}}). A form's field is every
 * occurrence of its key (field_list).
 */
static int collect(const json_t *body, const char *name, bool uuids, json_t *seen, size_t *sent,
		   json_t *errors)
{
	json_t *arr = field_list(body, name);
	json_t *bad = NULL;
	const json_t *v;
	size_t i;
	int rc = 0;

	if (arr == NULL) {
		/* absent, or a form's one value that could not be wrapped */
		if (json_object_get(body, name) != NULL)
			rc = TOKEND_ENOMEM;
		goto out;
	}
	if (json_is_null(arr))
		goto out;
	if (!json_is_array(arr)) {
		if (json_object_set_new(errors, name,
					json_pack("[s]", "Expected a list of items.")))
			rc = TOKEND_ENOMEM;
		goto out;
	}
	*sent += json_array_size(arr);
	json_array_foreach(arr, i, v) {
		const char *msg = NULL;
		char key[24];
		if (!json_is_string(v))
			msg = "Not a valid string.";
		else if (uuids && !util_uuid_valid(json_string_value(v)))
			msg = "Must be a valid UUID.";
		if (msg != NULL) {
			if (bad == NULL && (bad = json_object()) == NULL) {
				rc = TOKEND_ENOMEM;
				goto out;
			}
			snprintf(key, sizeof(key), "%zu", i);
			if (json_object_set_new(bad, key, json_pack("[s]", msg)) != 0) {
				rc = TOKEND_ENOMEM;
				goto out;
			}
			continue;
		}
		if (json_object_size(seen) <= DELETE_MAX &&
		    json_object_set_new(seen, json_string_value(v), json_string(name)) != 0) {
			rc = TOKEND_ENOMEM;
			goto out;
		}
	}
	if (bad != NULL) {
		rc = json_object_set_new(errors, name, bad) != 0 ? TOKEND_ENOMEM : 0;
		bad = NULL;
	}
out:
	json_decref(bad);
	json_decref(arr);
	return rc;
}

int handler_api_tokens_delete(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	struct jwtsign_policy pol;
	json_t *errors = NULL, *ids = NULL, *toks = NULL;
	const char **jtis = NULL;
	char(*found)[UUID_STR_LEN] = NULL;
	size_t n = 0, requested, sent = 0;
	const char *key;
	json_t *v;
	long deleted = 0;
	int rc;

	handler_token_policy(app, &pol);
	rc = team_check(ctx, res);
	if (rc == 0)
		rc = field_require_object(ctx->body, &res->body);
	if (rc != 0)
		return rc;
	errors = json_object();
	ids = json_object();
	toks = json_object();
	rc = TOKEND_ENOMEM;
	if (errors == NULL || ids == NULL || toks == NULL)
		goto out;
	/* An allocation that fails while reading the lists is a 500, never a
	 * shorter list (which would answer 200 and delete less). */
	if (collect(ctx->body, "token_issuer_uuids", true, ids, &sent, errors) != 0 ||
	    collect(ctx->body, "access_tokens", false, toks, &sent, errors) != 0)
		goto out;
	/* The bound counts entries as sent; requested_count counts them once. */
	requested = json_object_size(ids) + json_object_size(toks);
	if (json_object_size(errors) == 0 && (sent == 0 || sent > DELETE_MAX) &&
	    json_object_set_new(errors, "non_field_errors",
				json_pack("[s]", sent == 0 ? "Provide token_issuer_uuids and/or "
							     "access_tokens (1 to 1000 entries)."
							   : "Ensure there are no more than 1000 "
							     "entries in token_issuer_uuids and "
							     "access_tokens together.")) != 0)
		goto out; /* rc is TOKEND_ENOMEM */
	if (json_object_size(errors) > 0) {
		res->body = errors;
		errors = NULL;
		rc = TOKEND_EINVAL;
		goto out;
	}
	jtis = calloc(requested, sizeof(*jtis));
	found = calloc(requested, sizeof(*found));
	if (jtis == NULL || found == NULL)
		goto out;
	json_object_foreach(ids, key, v)
		jtis[n++] = key;
	/* A token string is found as stored; an ES256 token listed again (same
	 * claims, other signature bytes) by its checked jti. */
	json_object_foreach(toks, key, v) {
		struct jwtsign_token t;
		rc = store_api_token_find(app->store, key, found[n]);
		if (rc == TOKEND_ENOTFOUND &&
		    jwtsign_check(app->keys, key, strlen(key), &pol, &t, NULL) == 0 &&
		    strcmp(t.token_type, "api") == 0) {
			memcpy(found[n], t.jti, UUID_STR_LEN);
			rc = 0;
		}
		if (rc == 0) {
			jtis[n] = found[n];
			n++;
		} else if (rc != TOKEND_ENOTFOUND)
			goto out;
	}
	/* The answer exists before the delete commits; only its count is set after. */
	res->body = json_pack("{s:I, s:I}", "requested_count", (json_int_t)requested,
			      "deleted_count", (json_int_t)0);
	rc = res->body ? 0 : TOKEND_ENOMEM;
	if (rc == 0)
		rc = store_api_token_delete(app->store, ctx->user_uuid, ctx->params[0], pol.now,
					    jtis, n, &deleted);
	if (rc == 0) {
		metrics_api_tokens_deleted(deleted);
		json_integer_set(json_object_get(res->body, "deleted_count"), (json_int_t)deleted);
	} else {
		json_decref(res->body);
		res->body = NULL;
	}
out:
	free(jtis);
	free(found);
	json_decref(errors);
	json_decref(ids);
	json_decref(toks);
	return rc;
}
