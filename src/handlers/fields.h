/* SPDX-License-Identifier: MIT */
/*
 * This header is private to src/handlers/ (and their tests and fuzz
 * drivers): reading the fields of a decoded body (tokend/body.h) as DRF's
 * serializers do, with DRF's messages. Field validation is the handlers'
 * concern; the HTTP layer only decodes.
 */
#ifndef TOKEND_HANDLERS_FIELDS_H
#define TOKEND_HANDLERS_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * The value of field name as a handler should read a list: NULL when absent;
 * for a form, an array of every occurrence's string (one occurrence is a list
 * of one); otherwise the value as sent (a JSON string stays a string, for the
 * handler's "Expected a list of items."). Returns a new reference.
 */
json_t *field_list(const json_t *body, const char *name);

/*
 * The value of field name as a handler should read a scalar: for a form, the
 * last occurrence; otherwise the value as sent. Borrowed; NULL when absent.
 */
const json_t *field_get(const json_t *body, const char *name);

/*
 * If body is not an object, returns TOKEND_EINVAL and sets *err to DRF's
 * {"non_field_errors": ["Invalid data. Expected a dictionary, but got T."]}.
 */
int field_require_object(const json_t *body, json_t **err);

/*
 * Reads a required string field (field_get: a form's last occurrence):
 * returns the value (borrowed from body, with
 * *len set) or NULL after adding the DRF message list under name in errors
 * ("This field is required.", "This field may not be null.",
 * "Not a valid string.", "This field may not be blank.",
 * "Ensure this field has no more than N characters.",
 * "Null characters are not allowed."). With trim, leading and trailing
 * whitespace is ignored (DRF CharField's default); *len is the trimmed length
 * and the returned pointer is to the first non-blank byte.
 */
const char *field_string(const json_t *body, const char *name, bool trim, size_t max,
			 json_t *errors, size_t *len);

#endif
