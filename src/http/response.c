/* SPDX-License-Identifier: MIT */
/*
 * This module implements HTTP responses: the one mapping from enum
 * tokend_err to a status, the default JSON bodies for errors the router and
 * the framing checks raise, and the headers of API.md and RFC 6749 5.1.
 */
#include "http/response.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"

unsigned response_status_for(int rc, unsigned ok_status)
{
	switch (rc) {
	case TOKEND_OK: return ok_status;
	case TOKEND_EINVAL: return MHD_HTTP_BAD_REQUEST;
	case TOKEND_EBADREQ: return MHD_HTTP_BAD_REQUEST;
	case TOKEND_EAUTH: return MHD_HTTP_UNAUTHORIZED;
	case TOKEND_EFORBIDDEN: return MHD_HTTP_FORBIDDEN;
	case TOKEND_ENOTFOUND: return MHD_HTTP_NOT_FOUND;
	case TOKEND_EMETHOD: return MHD_HTTP_METHOD_NOT_ALLOWED;
	case TOKEND_ETIMEOUT: return MHD_HTTP_REQUEST_TIMEOUT;
	case TOKEND_ECONFLICT: return MHD_HTTP_CONFLICT;
	case TOKEND_EEXISTS: return MHD_HTTP_CONFLICT;
	case TOKEND_ETOOBIG: return MHD_HTTP_CONTENT_TOO_LARGE;
	case TOKEND_EMEDIA: return MHD_HTTP_UNSUPPORTED_MEDIA_TYPE;
	case TOKEND_EHEADER: return MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE;
	case TOKEND_ENOTIMPL: return MHD_HTTP_NOT_IMPLEMENTED;
	case TOKEND_EBUSY: return MHD_HTTP_SERVICE_UNAVAILABLE;
	/*
	 * The database failed or cannot be reached (a PostgreSQL server
	 * stopped or restarting, a connection broken): the request may succeed
	 * later, and a client must not read it as a verdict on its token.
	 */
	case TOKEND_EDB: return MHD_HTTP_SERVICE_UNAVAILABLE;
	case TOKEND_ETHROTTLED: return MHD_HTTP_TOO_MANY_REQUESTS;
	default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

static json_t *default_body(int rc, const struct response_meta *meta, int retry_after)
{
	char msg[256];

	switch (rc) {
	case TOKEND_ENOTFOUND: return json_pack("{s:s}", "detail", "Not found.");
	case TOKEND_EMETHOD:
		snprintf(msg, sizeof(msg), "Method \"%.32s\" not allowed.",
			 meta->method ? meta->method : "");
		return json_pack("{s:s}", "detail", msg);
	case TOKEND_ETOOBIG:
		snprintf(msg, sizeof(msg), "Request body exceeds the limit of %ld bytes.",
			 meta->limit);
		return json_pack("{s:s}", "detail", msg);
	case TOKEND_EMEDIA:
		/* DRF quotes the Content-Type here; an error body never echoes
		 * what the request sent (it may be anything, markup included). */
		return json_pack("{s:s}", "detail", "Unsupported media type in request.");
	case TOKEND_EHEADER:
		return json_pack("{s:s}", "detail", "Request header fields too large.");
	case TOKEND_EBADREQ:
		return json_pack("{s:s}", "detail",
				 meta->detail ? meta->detail
					      : "Bad request: Content-Length together with "
						"Transfer-Encoding.");
	case TOKEND_ENOTIMPL: return json_pack("{s:s}", "detail", "Unsupported Transfer-Encoding.");
	case TOKEND_ETIMEOUT: return json_pack("{s:s}", "detail", "Request timed out.");
	case TOKEND_EBUSY:
		return json_pack("{s:s, s:s}", "detail", "Server busy, try again later.", "code",
				 "busy");
	case TOKEND_EDB:
		return json_pack("{s:s, s:s}", "detail", "Service unavailable, try again later.",
				 "code", "store_unavailable");
	case TOKEND_EAUTH:
		return json_pack("{s:s}", "detail",
				 "Authentication credentials were not provided.");
	case TOKEND_ETHROTTLED:
		/* DRF's Throttled text, "1 second" in the singular. */
		retry_after = retry_after > 0 ? retry_after : 1;
		snprintf(msg, sizeof(msg),
			 "Request was throttled. Expected available in %d second%s.", retry_after,
			 retry_after == 1 ? "" : "s");
		return json_pack("{s:s}", "detail", msg);
	default: return json_pack("{s:s}", "detail", "A server error occurred.");
	}
}

/*
 * API.md "Browsers (CORS)". Only for an allowed origin, named as configured
 * (never "*", never the request's bytes); never Allow-Credentials, since
 * tokens travel in Authorization, not cookies. Vary: Origin on every answer
 * while CORS is on: a shared cache (jwks.json is cacheable) must not hand
 * one origin's answer to another.
 */
static void add_cors(struct MHD_Response *r, const struct response_meta *meta)
{
	char num[24];

	if (!meta->cors)
		return;
	MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ORIGIN);
	if (meta->cors_origin == NULL)
		return;
	MHD_add_response_header(r, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, meta->cors_origin);
	if (meta->preflight) {
		snprintf(num, sizeof(num), "%ld", meta->max_age);
		MHD_add_response_header(r, "Access-Control-Allow-Methods", meta->allow);
		MHD_add_response_header(r, "Access-Control-Allow-Headers",
					"Authorization, Content-Type");
		MHD_add_response_header(r, "Access-Control-Max-Age", num);
	} else {
		/* What a page may read besides the safelisted headers. */
		MHD_add_response_header(r, "Access-Control-Expose-Headers",
					"Retry-After, WWW-Authenticate");
	}
}

struct MHD_Response *response_build(int rc, unsigned ok_status, struct handler_result *res,
				    const struct response_meta *meta, unsigned *status,
				    size_t *bytes)
{
	struct MHD_Response *r;
	json_t *body = res->body;
	char *text = res->text;
	char num[24];
	size_t len;

	res->body = NULL;
	res->text = NULL;
	*status = response_status_for(rc, ok_status);
	if (meta->preflight && rc == 0) {
		json_decref(body);
		free(text);
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (r == NULL)
			return NULL;
		*bytes = 0;
		MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
		add_cors(r, meta);
		return r;
	}
	if (*status == MHD_HTTP_INTERNAL_SERVER_ERROR) {
		/* Never leak internals: replace whatever was built. */
		json_decref(body);
		body = NULL;
		free(text);
		text = NULL;
	}
	if (text == NULL) {
		if (body == NULL)
			body = default_body(rc, meta, res->retry_after);
		text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	}
	json_decref(body);
	if (text == NULL)
		return NULL;
	len = strlen(text);
	r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(text);
		return NULL;
	}
	*bytes = len;
	/* An error is JSON whatever the handler meant to send. */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				rc == 0 && res->content_type ? res->content_type
							     : "application/json");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (res->no_store) {
		MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
		MHD_add_response_header(r, MHD_HTTP_HEADER_PRAGMA, "no-cache");
	}
	if (*status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"api\"");
	if (*status == MHD_HTTP_METHOD_NOT_ALLOWED && meta->allow != NULL)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, meta->allow);
	if (*status == MHD_HTTP_SERVICE_UNAVAILABLE || *status == MHD_HTTP_TOO_MANY_REQUESTS) {
		snprintf(num, sizeof(num), "%d", res->retry_after > 0 ? res->retry_after : 1);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, num);
	}
	if (meta->close)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	/* The handler's own, checked by handler_header_add(): never on an error. */
	for (unsigned i = 0; rc == TOKEND_OK && i < res->n_headers && i < HANDLER_HEADERS_MAX; i++)
		MHD_add_response_header(r, res->headers[i].name, res->headers[i].value);
	add_cors(r, meta);
	return r;
}
