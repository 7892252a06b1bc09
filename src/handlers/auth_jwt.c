/* SPDX-License-Identifier: MIT */
/*
 * This module implements the /api/auth/jwt/ route family of API.md. Login
 * (handler_jwt_obtain) runs on the worker pool because of the password hash:
 * an unknown user costs the same hash as a wrong password, a stored hash
 * that is cheaper than configured or does not parse costs the configured
 * count all the same, and an inactive user is refused only after the hash,
 * so body and timing never tell which usernames exist.
 *
 * Login is throttled (issue 12) per (username, client) and per username in
 * the fast part, on the HTTP thread, before the hash is queued: a
 * throttled attempt costs no hash and is answered 429 at once, and the
 * username is counted whether or not it exists. An admitted attempt is
 * pending at once (tokend/throttle.h), so that a burst of parallel guesses
 * cannot pass the check before the first of them is hashed; the slow part
 * settles it (a failure counts; a success clears the (username, client)
 * entry and is no failure of the username; a
 * server error or a 503 -- hash queue full, or past its deadline: never
 * tried -- counts nothing).
 */
#include <assert.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/auth.h"
#include "handlers/fields.h"
#include "tokend/app.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/jwtsign.h"
#include "tokend/log.h"
#include "tokend/metrics.h"
#include "tokend/password.h"
#include "tokend/store.h"
#include "tokend/throttle.h"
#include "tokend/util.h"

/* A user row holds any hash crypto makes or accepts. */
static_assert(PASSWORD_HASH_MAX <= STORE_HASH_MAX, "store_user.password is too short");

static const char no_account[] = "No active account found with the given credentials";

/*
 * Mints the refresh token r describes and its access token (jti
 * r->access_jti, issued with it) with key r->kid, into a {"refresh",
 * "access"} body; both name their session (sid: the family). Minting is
 * deterministic for HS256/RS256 and every claim comes from the row, so a
 * replay of the same row gives the same strings. iss and aud are the
 * policy's.
 */
static int mint_pair(const struct app *app, const struct store_refresh *r, json_t **out)
{
	struct jwtsign_policy pol;
	struct jwtsign_claims c;
	char *refresh = NULL;
	char *access = NULL;
	int rc;

	handler_token_policy(app, &pol);
	c = (struct jwtsign_claims){
		.token_type = "refresh",
		.jti = r->jti,
		.user_id = r->user_uuid,
		.sid = r->family,
		.iat = r->issued_at,
		.exp = r->expires_at,
		.kid = r->kid,
		.issuer = pol.issuer,
		.audience = pol.audience,
	};
	rc = jwtsign_mint(app->keys, &c, &refresh);
	if (rc != 0)
		goto out;
	c.token_type = "access";
	c.jti = r->access_jti;
	c.exp = r->issued_at + app->cfg.access_lifetime;
	/* No token outlives its session (the refresh row's exp is cut already). */
	if (r->session_created_at > 0 && c.exp > r->session_created_at + app->cfg.session_lifetime)
		c.exp = r->session_created_at + app->cfg.session_lifetime;
	rc = jwtsign_mint(app->keys, &c, &access);
	if (rc != 0)
		goto out;
	*out = json_pack("{s:s, s:s}", "refresh", refresh, "access", access);
	rc = *out ? 0 : TOKEND_ENOMEM;
out:
	free(access);
	free(refresh);
	return rc;
}

/* Describes a new refresh token of user, signed by the current key. */
static int new_refresh(const struct app *app, const char *user_uuid, struct store_refresh *r)
{
	memset(r, 0, sizeof(*r));
	if (util_uuid_new(r->jti) != 0 || util_uuid_new(r->access_jti) != 0)
		return TOKEND_ECRYPTO;
	memcpy(r->user_uuid, user_uuid, UUID_STR_LEN);
	jwtsign_signing_kid(app->keys, r->kid);
	r->issued_at = util_now();
	r->expires_at = r->issued_at + app->cfg.refresh_lifetime;
	return 0;
}

/*
 * Mints a new pair for a login and records its session and refresh token;
 * TOKEND_ENOTFOUND (nothing recorded) when the user was disabled or deleted
 * while the password hashed: the caller refuses the login.
 */
static int issue_pair(const struct app *app, const char *user_uuid, json_t **out)
{
	struct store_refresh r;
	int rc;

	rc = new_refresh(app, user_uuid, &r);
	if (rc != 0)
		return rc;
	/* A login starts a refresh family (its session) named by its first refresh jti. */
	memcpy(r.family, r.jti, UUID_STR_LEN);
	r.session_created_at = r.issued_at;
	if (r.expires_at > r.issued_at + app->cfg.session_lifetime)
		r.expires_at = r.issued_at + app->cfg.session_lifetime;
	rc = mint_pair(app, &r, out);
	if (rc == 0) {
		rc = store_login_record(app->store, &r);
		if (rc != 0) {
			json_decref(*out);
			*out = NULL;
		}
	}
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
	const char *name = field_string(ctx->body, "username", true, max, errors, namelen);

	*pw = field_string(ctx->body, "password", false, max, errors, pwlen);
	return *pw ? name : NULL;
}

/* Bytes of a username shown in a log line; the rest is cut. */
#define LOG_NAME_MAX 64

/* name for a log line (log_escape), cut at LOG_NAME_MAX with "...". */
static void name_for_log(const char *name, size_t len, char *out, size_t outlen)
{
	if (log_escape(name, len, out, outlen - 3, LOG_NAME_MAX))
		memcpy(out + strlen(out), "...", 4);
}

struct login_keys {
	uint64_t client; /* (username, client address) in app->login_client */
	uint64_t user;   /* username in app->login_user */
	int64_t now;     /* monotonic seconds */
};

static void login_keys(const struct handler_ctx *ctx, const char *name, size_t namelen,
		       struct login_keys *k)
{
	const char *remote = ctx->remote ? ctx->remote : "";

	k->client = throttle_key(ctx->app->login_client, name, namelen, remote, strlen(remote));
	k->user = throttle_key(ctx->app->login_user, name, namelen, NULL, 0);
	k->now = (int64_t)(util_mono_us() / 1000000u);
}

/*
 * Admits a login attempt under both limits, counting it, or fills the 429
 * (retry_after) and returns TOKEND_ETHROTTLED with nothing counted. The
 * first refusal of a window logs one warn line (fail2ban reads the access
 * log's 429 and address; this line says which limit and for whom).
 */
static int login_admit(const struct handler_ctx *ctx, const char *name, size_t namelen,
		       struct handler_result *res)
{
	const struct app *app = ctx->app;
	struct login_keys k;
	enum throttle_outcome o;
	char shown[LOG_NAME_MAX * 4 + 8];
	long ra = 1;

	login_keys(ctx, name, namelen, &k);
	o = throttle_admit(app->login_client, k.client, k.now, &ra);
	if (o == THROTTLE_ADMITTED) {
		o = throttle_admit(app->login_user, k.user, k.now, &ra);
		if (o == THROTTLE_ADMITTED)
			return 0;
		throttle_forgive(app->login_client, k.client, k.now);
		if (o == THROTTLE_REFUSED_FIRST) {
			name_for_log(name, namelen, shown, sizeof(shown));
			log_warn(
				"auth: login throttled for user \"%s\" from all clients (last %s): "
				"%ld failures in %ld s; retry in %ld s",
				shown, ctx->remote, app->cfg.login_user_failures,
				app->cfg.login_user_window, ra);
		}
	} else if (o == THROTTLE_REFUSED_FIRST) {
		name_for_log(name, namelen, shown, sizeof(shown));
		log_warn("auth: login throttled for user \"%s\" from %s: %ld failures in %ld s; "
			 "retry in %ld s",
			 shown, ctx->remote, app->cfg.login_client_failures,
			 app->cfg.login_client_window, ra);
	}
	res->retry_after = ra > INT32_MAX ? INT32_MAX : (int)ra;
	metrics_login(METRICS_LOGIN_THROTTLED);
	return TOKEND_ETHROTTLED;
}

/*
 * Settles an admitted attempt by its outcome rc: a refusal (TOKEND_EAUTH:
 * wrong password, unknown or inactive user) is a failure of both keys; a
 * success clears the (username, client) entry and is no failure of the
 * username; any other error was not the caller's failure.
 */
static void login_settle(const struct handler_ctx *ctx, const char *name, size_t namelen, int rc)
{
	const struct app *app = ctx->app;
	struct login_keys k;

	login_keys(ctx, name, namelen, &k);
	if (rc == TOKEND_EAUTH) {
		throttle_fail(app->login_client, k.client, k.now);
		throttle_fail(app->login_user, k.user, k.now);
		return;
	}
	if (rc == 0)
		throttle_clear(app->login_client, k.client);
	else
		throttle_forgive(app->login_client, k.client, k.now);
	throttle_forgive(app->login_user, k.user, k.now);
}

/* A login whose hash will never run (503, queue full): no failure. On
 * ENOMEM here its attempt stays pending until the window ends (at most
 * limit of them). */
static void jwt_obtain_cancel(const struct handler_ctx *ctx)
{
	json_t *errors = json_object();
	const char *name, *pw;
	size_t namelen = 0, pwlen = 0;

	metrics_login(METRICS_LOGIN_QUEUE_FULL);
	if (errors == NULL)
		return;
	name = login_fields(ctx, errors, &namelen, &pw, &pwlen);
	if (name != NULL) /* validated by handler_jwt_obtain */
		login_settle(ctx, name, namelen, TOKEND_EBUSY);
	json_decref(errors);
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
	/*
	 * Every refusal costs the configured iterations: unknown users hash a
	 * dummy, a failed check pays for a cheaper or unparsable stored hash
	 * (password_verify), and an inactive user whose right password has a
	 * cheaper hash pays the difference, since it is not re-hashed.
	 */
	if (found) {
		ok = password_verify(pw, pwlen, user.password, app->cfg.pbkdf2_iterations, &rehash);
		if (ok && !user.is_active)
			password_harden_runtime(pw, pwlen, user.password,
						app->cfg.pbkdf2_iterations);
	} else {
		password_verify_dummy(pw, pwlen, app->cfg.pbkdf2_iterations);
	}
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
	login_settle(ctx, name, namelen, rc);
	if (rc == 0)
		metrics_login(METRICS_LOGIN_SUCCESS);
	else if (rc == TOKEND_EAUTH)
		metrics_login(METRICS_LOGIN_FAILURE);
	OPENSSL_cleanse(&user, sizeof(user));
	json_decref(errors);
	return rc;
}

int handler_jwt_obtain(const struct handler_ctx *ctx, struct handler_result *res)
{
	json_t *errors;
	const char *name, *pw;
	size_t namelen = 0, pwlen = 0;
	int rc;

	rc = field_require_object(ctx->body, &res->body);
	if (rc != 0)
		return rc;
	errors = json_object();
	if (errors == NULL)
		return TOKEND_ENOMEM;
	name = login_fields(ctx, errors, &namelen, &pw, &pwlen);
	if (name == NULL) { /* a field error counts nothing */
		res->body = errors;
		return TOKEND_EINVAL;
	}
	json_decref(errors);
	rc = login_admit(ctx, name, namelen, res);
	if (rc != 0)
		return rc;
	res->slow = jwt_obtain_slow;
	res->cancel = jwt_obtain_cancel;
	return 0;
}

/* The 401 body of simplejwt's InvalidToken for the refresh and verify routes. */
static int token_not_valid(struct handler_result *res)
{
	json_decref(res->body);
	res->body = NULL;
	res->text =
		strdup("{\"detail\":\"Token is invalid or expired\",\"code\":\"token_not_valid\"}");
	return res->text ? TOKEND_EAUTH : TOKEND_ENOMEM;
}

/* Reads the one required string field name of a JSON object body. */
static int token_field(const struct handler_ctx *ctx, struct handler_result *res, const char *name,
		       const char **tok, size_t *len)
{
	json_t *errors;
	int rc = field_require_object(ctx->body, &res->body);

	if (rc != 0)
		return rc;
	errors = json_object();
	if (errors == NULL)
		return TOKEND_ENOMEM;
	/* Longer than any token we mint: not a field error, an invalid token. */
	*tok = field_string(ctx->body, name, true, SIZE_MAX, errors, len);
	if (*tok == NULL) {
		res->body = errors;
		return TOKEND_EINVAL;
	}
	json_decref(errors);
	return 0;
}

/*
 * Reads the body's "refresh" field and checks it is a valid refresh token
 * of ours (claims into *t, the policy used into *pol); otherwise fills the
 * 400 field errors or the 401 token_not_valid body.
 */
static int refresh_field(const struct handler_ctx *ctx, struct handler_result *res,
			 struct jwtsign_policy *pol, struct jwtsign_token *t)
{
	const char *tok;
	size_t len;
	int rc;

	handler_token_policy(ctx->app, pol);
	rc = token_field(ctx, res, "refresh", &tok, &len);
	if (rc != 0)
		return rc;
	if (jwtsign_check(ctx->app->keys, tok, len, pol, t, NULL) != 0 ||
	    strcmp(t->token_type, "refresh") != 0)
		return token_not_valid(res);
	return 0;
}

struct mint_arg {
	const struct app *app;
	json_t **pair;
	struct store_refresh minted; /* the row *pair was minted from */
};

/*
 * Whether the pair minted from *minted (the handler's row with the old
 * token's session) is the pair of the store's row b. The store changes
 * only what it fills and cuts: the family, expires_at, and the session's
 * start, which may cut the access token's expiry.
 */
static bool same_pair(const struct app *app, const struct store_refresh *minted,
		      const struct store_refresh *b)
{
	int64_t access_exp = b->issued_at + app->cfg.access_lifetime;
	bool cut = b->session_created_at > 0 &&
		   access_exp > b->session_created_at + app->cfg.session_lifetime;

	return !cut && strcmp(minted->family, b->family) == 0 &&
	       minted->expires_at == b->expires_at;
}

/*
 * store_rotation_commit_fn: the pair of the row about to be committed. The
 * handler minted it before the rotation from what the old token says (its
 * session, no cut to the session's end), so that the signing runs outside
 * the store's write lock; the store's row differs only when the session's
 * end cuts it (or a token minted before sessions names none): then it is
 * minted again here.
 */
static int mint_before_commit(const struct store_refresh *next, void *arg)
{
	struct mint_arg *ma = arg;

	if (*ma->pair != NULL && same_pair(ma->app, &ma->minted, next))
		return 0;
	json_decref(*ma->pair);
	*ma->pair = NULL;
	return mint_pair(ma->app, next, ma->pair);
}

int handler_jwt_refresh(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	struct jwtsign_policy pol;
	struct jwtsign_token t;
	struct store_refresh next, replay;
	enum store_rotation outcome;
	json_t *pair = NULL;
	int rc;

	rc = refresh_field(ctx, res, &pol, &t);
	if (rc != 0)
		return rc;
	rc = new_refresh(app, t.user_id, &next);
	if (rc != 0)
		return rc;
	next.issued_at = pol.now;
	next.expires_at = pol.now + app->cfg.refresh_lifetime;
	/*
	 * The new pair is minted inside the rotation, before it commits: once
	 * the old token is spent, an answer that cannot be built (out of
	 * memory) would leave the client holding a used token, whose retry
	 * revokes the family. (The store fills the family and cuts expires_at
	 * to the session's end first, so the pair is minted from the final row.)
	 */
	struct mint_arg ma = {app, &pair, next};
	if (t.sid[0] != '\0') {
		memcpy(ma.minted.family, t.sid, UUID_STR_LEN);
		rc = mint_pair(app, &ma.minted, &pair);
		if (rc != 0)
			return rc;
	}
	rc = store_refresh_rotate_then(app->store, t.jti, t.user_id, pol.now,
				       app->cfg.refresh_grace, app->cfg.session_lifetime, &next,
				       &replay, &outcome, mint_before_commit, &ma);
	if (rc != 0) {
		json_decref(pair);
		return rc;
	}
	if (outcome != STORE_ROTATED)
		json_decref(pair);
	switch (outcome) {
	case STORE_ROTATED:
		metrics_refresh(METRICS_REFRESH_ROTATED);
		res->body = pair;
		break;
	case STORE_REPLAYED:
		metrics_refresh(METRICS_REFRESH_REPLAYED);
		rc = mint_pair(app, &replay, &res->body);
		break;
	case STORE_INACTIVE:
		res->body = json_pack("{s:s, s:s}", "detail",
				      "No active account found for the given token.", "code",
				      "no_active_account");
		return TOKEND_EAUTH;
	case STORE_REUSED:
		metrics_refresh(METRICS_REFRESH_REUSED);
		log_warn("auth: refresh token %s of user %s reused: family revoked", t.jti,
			 t.user_id);
		return token_not_valid(res);
	case STORE_ENDED:
		metrics_refresh(METRICS_REFRESH_ENDED);
		log_info("auth: refresh token %s of user %s: its session has ended", t.jti,
			 t.user_id);
		return token_not_valid(res);
	default: return token_not_valid(res);
	}
	res->no_store = true;
	return rc;
}

int handler_jwt_blacklist(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	struct jwtsign_policy pol;
	struct jwtsign_token t;
	enum store_logout outcome;
	int rc;

	/* The refresh token is the credential: whoever holds it may end its session. */
	rc = refresh_field(ctx, res, &pol, &t);
	if (rc != 0)
		return rc;
	rc = store_refresh_logout(app->store, t.jti, t.user_id, pol.now, app->cfg.refresh_grace,
				  app->cfg.session_lifetime, &outcome);
	if (rc != 0)
		return rc;
	switch (outcome) {
	case STORE_LOGOUT_ENDED:
		/* the jti, not the sid: a token minted before sessions has none */
		log_info("auth: refresh token %s of user %s: logged out, session ended", t.jti,
			 t.user_id);
		res->body = json_object();
		return res->body ? 0 : TOKEND_ENOMEM;
	case STORE_LOGOUT_REUSED:
		log_warn("auth: refresh token %s of user %s reused at logout: family revoked",
			 t.jti, t.user_id);
		return token_not_valid(res);
	default: return token_not_valid(res);
	}
}

/* *active = user uuid exists and is active. */
int handler_jwt_verify(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	struct jwtsign_policy pol;
	struct jwtsign_token t;
	const char *tok;
	size_t len;
	bool live = true;
	int rc;

	handler_token_policy(app, &pol);
	rc = token_field(ctx, res, "token", &tok, &len);
	if (rc != 0)
		return rc;
	if (jwtsign_check(app->keys, tok, len, &pol, &t, NULL) != 0)
		return token_not_valid(res);
	/*
	 * A refresh token is looked up by its row (and its session and user),
	 * an API token by its row (and its user and membership). An access
	 * token's session is checked against the ended sessions the server
	 * keeps in memory (store_session_ended: no lookup, and still current
	 * across processes); disabling or deleting a user ends its sessions.
	 * The memory covers the ends of one access lifetime (and the leeway):
	 * a token minted to live longer (under an earlier, longer
	 * access_lifetime, or by a server configured so) is looked up as
	 * Bearer authentication does. An access token minted before sessions
	 * existed (no sid) lives out its few minutes unless its user is
	 * disabled or deleted (looked up).
	 * Bearer authentication looks the session up for its user (it answers
	 * user_not_found and user_inactive), and then remembers it live per
	 * thread until the ends in memory say otherwise (store_session_state).
	 */
	if (strcmp(t.token_type, "refresh") == 0)
		rc = store_refresh_live(app->store, t.jti, t.user_id, &live);
	else if (strcmp(t.token_type, "api") == 0)
		rc = store_api_token_live(app->store, t.jti, t.user_id, t.team_uuid, &live);
	else if (t.sid[0] != '\0' && t.exp - t.iat <= app->cfg.access_lifetime) {
		bool ended = true;
		rc = store_session_ended(app->store, t.sid, &ended);
		live = !ended;
	} else {
		enum store_session state = STORE_SESSION_ENDED;
		rc = handler_access_state(app, &t, &state); /* the user row decides */
		live = state == STORE_SESSION_LIVE;
	}
	if (rc != 0)
		return rc;
	if (!live)
		return token_not_valid(res);
	/* The token passed the check: base64url and dots, nothing to escape. */
	struct util_buf b = {0};
	util_buf_puts(&b, "{\"token\":\"");
	util_buf_add(&b, tok, len);
	util_buf_puts(&b, "\"}");
	if (b.failed) {
		free(b.p);
		return TOKEND_ENOMEM;
	}
	res->text = b.p;
	res->no_store = true; /* it carries the token back */
	return 0;
}

int handler_jwks(const struct handler_ctx *ctx, struct handler_result *res)
{
	char *doc = jwtsign_jwks(ctx->app->keys);

	if (doc == NULL)
		return TOKEND_ENOMEM;
	res->body = json_loads(doc, 0, NULL);
	free(doc);
	return res->body ? 0 : TOKEND_ENOMEM;
}
