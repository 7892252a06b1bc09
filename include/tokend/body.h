/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of request-body decoding and field validation.
 * Bodies arrive as JSON or application/x-www-form-urlencoded; both become a
 * jansson value so handlers see one shape. Errors come back as the DRF bodies
 * of API.md, ready to send. Nothing here knows about libmicrohttpd.
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
int body_decode(enum body_type type, const char *data, size_t len, long max_depth,
		json_t **out, json_t **err);

/*
 * Decodes an application/x-www-form-urlencoded body into an object: '+' is a
 * space, %XX is decoded, a key given once maps to its string and a repeated
 * key to the array of its strings in order (as DRF's QueryDict keeps them:
 * body_string_field takes the last, body_list_field all). Invalid
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

/*
 * The value of field name as a handler should read a list: NULL when absent;
 * for a form, an array of every occurrence's string (one occurrence is a list
 * of one); otherwise the value as sent (a JSON string stays a string, for the
 * handler's "Expected a list of items."). Returns a new reference.
 */
json_t *body_list_field(const json_t *body, const char *name);

/*
 * The value of field name as a handler should read a scalar: for a form, the
 * last occurrence; otherwise the value as sent. Borrowed; NULL when absent.
 */
const json_t *body_field(const json_t *body, const char *name);

/*
 * If body is not an object, returns TOKEND_EINVAL and sets *err to DRF's
 * {"non_field_errors": ["Invalid data. Expected a dictionary, but got T."]}.
 */
int body_require_object(const json_t *body, json_t **err);

/*
 * Reads a required string field (body_field: a form's last occurrence):
 * returns the value (borrowed from body, with
 * *len set) or NULL after adding the DRF message list under name in errors
 * ("This field is required.", "This field may not be null.",
 * "Not a valid string.", "This field may not be blank.",
 * "Ensure this field has no more than N characters.",
 * "Null characters are not allowed."). With trim, leading and trailing
 * whitespace is ignored (DRF CharField's default); *len is the trimmed length
 * and the returned pointer is to the first non-blank byte.
 */
const char *body_string_field(const json_t *body, const char *name, bool trim, size_t max,
			      json_t *errors, size_t *len);

#endif
