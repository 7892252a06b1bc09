/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of request-body decoding. Bodies arrive as
 * JSON or application/x-www-form-urlencoded; both become a jansson value so
 * handlers see one shape (they read its fields through handlers/fields.h).
 * Errors come back as the DRF bodies of API.md, ready to send. Nothing here
 * knows about libmicrohttpd.
 */
#ifndef TOKEND_BODY_H
#define TOKEND_BODY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum body_type { BODY_JSON, BODY_FORM, BODY_UNSUPPORTED };

/*
 * Classifies a Content-Type header value (NULL = absent, treated as JSON).
 * "application/json" with no charset or charset=utf-8, and
 * "application/x-www-form-urlencoded" (charset utf-8 or none) are supported;
 * anything else is BODY_UNSUPPORTED.
 */
enum body_type body_type_of(const char *content_type);

/*
 * Decodes len bytes of data (an empty body decodes to an empty object).
 * On success returns 0 and *out holds a new reference. On failure returns
 * TOKEND_EINVAL and *err holds a new reference to the error body, e.g.
 * {"detail": "JSON parse error - ..."}. max_depth caps JSON nesting.
 */
int body_decode(enum body_type type, const char *data, size_t len, long max_depth, json_t **out,
		json_t **err);

/*
 * Decodes an application/x-www-form-urlencoded body into an object: '+' is a
 * space, %XX is decoded, a key given once maps to its string and a repeated
 * key to the array of its strings in order (as DRF's QueryDict keeps them:
 * field_string takes the last, field_list all). Invalid
 * percent-encoding or UTF-8 gives TOKEND_EINVAL. body_decode(BODY_FORM, ...)
 * also marks the object as a form (body_is_form); this function does not.
 */
int body_form_decode(const char *data, size_t len, json_t **out);

/*
 * True when body came from body_decode(BODY_FORM, ...) of a non-empty body.
 * The mark is a key holding a NUL byte, which no JSON text can carry
 * (jansson refuses it), so a JSON body never passes for a form.
 */
bool body_is_form(const json_t *body);

#endif
