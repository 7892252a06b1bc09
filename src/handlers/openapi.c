/* SPDX-License-Identifier: MIT */
/*
 * This module implements GET /api/openapi.json: the OpenAPI 3.1 document of
 * docs/openapi.yaml, converted to JSON and compiled into the binary by the
 * build (cmake/embed_openapi.py), so that an installed tokend serves the
 * description of exactly the API it implements, without the source tree.
 * It changes only with the binary: public, cached for an hour.
 */
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/handlers.h"

/* build/openapi.c, generated. */
extern const char handler_openapi_json[];
extern const size_t handler_openapi_json_len;

int handler_openapi(const struct handler_ctx *ctx, struct handler_result *res)
{
	(void)ctx;
	/* A copy: the HTTP layer frees res->text. 26 KiB, on a rare route. */
	res->text = malloc(handler_openapi_json_len + 1);
	if (res->text == NULL)
		return TOKEND_ENOMEM;
	memcpy(res->text, handler_openapi_json, handler_openapi_json_len + 1);
	handler_header_add(res, "Cache-Control", "public, max-age=3600");
	return 0;
}
