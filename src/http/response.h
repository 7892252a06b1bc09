/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the response module, private to src/http/:
 * it maps an enum tokend_err to an HTTP status (the one place that does),
 * fills in the default JSON error bodies, and sets the headers every
 * response carries.
 */
#ifndef TOKEND_HTTP_RESPONSE_H
#define TOKEND_HTTP_RESPONSE_H

#include <microhttpd.h>
#include <stdbool.h>

#include "tokend/handlers.h"

/* The HTTP status for rc; ok_status when rc is 0. */
unsigned response_status_for(int rc, unsigned ok_status);

/* What a response needs beyond the handler result. */
struct response_meta {
	const char *method;      /* for the 405 message */
	const char *allow;       /* methods, for 405 */
	long limit;              /* the body limit, for 413 */
	bool close;              /* framing was bad: close after answering */
	const char *detail;      /* a 400's reason (constant, never request bytes) */
	bool cors;               /* CORS is on: every answer varies on Origin */
	const char *cors_origin; /* the allowed origin to name (config-owned), or NULL */
	bool preflight;          /* a granted preflight: 204, the methods of allow */
	long max_age;            /* of a preflight, seconds */
};

/*
 * Builds the response for rc and res (taking res->body; a default error body
 * is made when it is NULL), or, for a granted preflight, an empty 204.
 * With meta->cors_origin, the answer carries the CORS headers of API.md.
 * Returns NULL only when out of memory. *status and *bytes get what will be
 * sent.
 */
struct MHD_Response *response_build(int rc, unsigned ok_status, struct handler_result *res,
				    const struct response_meta *meta, unsigned *status,
				    size_t *bytes);

#endif
