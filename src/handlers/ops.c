/* SPDX-License-Identifier: MIT */
/*
 * This module implements the operations routes of API.md ("Around the six
 * routes"): GET /healthz (liveness: the process serves), GET /readyz
 * (readiness: the store answers within READY_TIMEOUT_MS and a signing key
 * is loaded) and GET /metrics (the Prometheus text format, to the
 * [metrics] allowed addresses only). Probe answers are never cached, and
 * a 503's reason is one of a few constants: a probe's body may be shown
 * to anyone, and paths or driver messages belong in the log.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/app.h"
#include "tokend/cidr.h"
#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/keys.h"
#include "tokend/log.h"
#include "tokend/metrics.h"
#include "tokend/store.h"

/* How long a readiness probe waits for another process's database lock:
 * well inside the 1 s probe timeout that load balancers commonly use. */
#define READY_TIMEOUT_MS 250

static const char prometheus_text[] = "text/plain; version=0.0.4; charset=utf-8";

/* The last readiness answered, so that a change is logged once, not per probe. */
static atomic_bool was_ready = true;

static void note_readiness(const char *reason)
{
	bool ready = reason == NULL;

	if (atomic_exchange(&was_ready, ready) == ready)
		return;
	if (ready)
		log_info("readyz: ready again");
	else
		log_warn("readyz: not ready: %s", reason);
}

static int constant(struct handler_result *res, const char *text)
{
	res->text = strdup(text);
	res->no_store = true;
	return res->text ? 0 : TOKEND_ENOMEM;
}

int handler_healthz(const struct handler_ctx *ctx, struct handler_result *res)
{
	(void)ctx;
	return constant(res, "{\"status\":\"ok\"}");
}

int handler_readyz(const struct handler_ctx *ctx, struct handler_result *res)
{
	const struct app *app = ctx->app;
	const char *reason = NULL;
	const char *kid = app->keys ? jwtsign_current_kid(app->keys) : NULL;
	int rc;

	if (kid == NULL || kid[0] == '\0') {
		reason = "no signing key";
	} else {
		rc = store_ping(app->store, READY_TIMEOUT_MS);
		if (rc == TOKEND_EBUSY)
			reason = "store locked";
		else if (rc != 0)
			reason = "store unavailable";
	}
	note_readiness(reason);
	if (reason == NULL)
		return constant(res, "{\"status\":\"ready\"}");
	res->body = json_pack("{s:s, s:s}", "status", "unavailable", "reason", reason);
	res->no_store = true;
	res->retry_after = 1;
	return res->body ? TOKEND_EBUSY : TOKEND_ENOMEM;
}

int handler_metrics(const struct handler_ctx *ctx, struct handler_result *res)
{
	const char *remote = ctx->remote ? ctx->remote : "";

	if (!metrics_enabled() ||
	    !cidr_list_match_text(&ctx->app->metrics_allowed, remote, strlen(remote)))
		return TOKEND_ENOTFOUND; /* the router's own 404 body */
	res->text = metrics_render();
	if (res->text == NULL)
		return TOKEND_ENOMEM;
	res->content_type = prometheus_text;
	res->no_store = true;
	return 0;
}
