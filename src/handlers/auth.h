/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/handlers/: the Bearer authentication that
 * the protected routes (auth.c, handler_authenticated) and forward auth
 * (forward.c) share, so that both read the header, check the token and
 * answer API.md's 401 table the same way.
 */
#ifndef TOKEND_HANDLERS_AUTH_H
#define TOKEND_HANDLERS_AUTH_H

#include <stdbool.h>

#include "tokend/handlers.h"
#include "tokend/jwtsign.h"
#include "tokend/store.h"

/*
 * Reads "Authorization: Bearer <token>" (handler_bearer_parse) and checks
 * the token: an access token, or with api an API token too, into *t.
 * Otherwise fills the 401 body of API.md's table and returns TOKEND_EAUTH.
 */
int handler_bearer_token(const struct handler_ctx *ctx, struct handler_result *res, bool api,
			 struct jwtsign_token *t);

/*
 * The state of a valid access token's session (store_session_state), or,
 * for a token minted before sessions (no sid), of its user. One lookup.
 */
int handler_access_state(const struct app *app, const struct jwtsign_token *t,
			 enum store_session *state);

/*
 * 0 for STORE_SESSION_LIVE; otherwise fills API.md's 401 (user_not_found,
 * user_inactive, or token_not_valid for an ended session) and returns
 * TOKEND_EAUTH.
 */
int handler_session_refusal(struct handler_result *res, enum store_session state);

#endif
