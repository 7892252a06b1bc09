/* SPDX-License-Identifier: MIT */
/*
 * This module implements the handlers' field validation: reading a decoded
 * body (src/http/body.c: JSON, or a form with every value of a repeated key)
 * as DRF's serializers would, and DRF's error messages of API.md. It is the
 * handlers' concern, not the HTTP layer's: body.c only decodes bytes.
 */
#include "handlers/fields.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "tokend/body.h"
#include "tokend/err.h"

json_t *field_list(const json_t *body, const char *name)
{
	json_t *v = json_object_get(body, name);

	if (v == NULL)
		return NULL;
	if (body_is_form(body) && json_is_string(v))
		return json_pack("[O]", v);
	return json_incref(v);
}

const json_t *field_get(const json_t *body, const char *name)
{
	const json_t *v = json_object_get(body, name);

	if (body_is_form(body) && json_is_array(v))
		return json_array_get(v, json_array_size(v) - 1);
	return v;
}

static const char *python_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_ARRAY: return "list";
	case JSON_INTEGER: return "int";
	case JSON_REAL: return "float";
	case JSON_STRING: return "str";
	case JSON_TRUE:
	case JSON_FALSE: return "bool";
	case JSON_NULL: return "NoneType";
	default: return "dict";
	}
}

int field_require_object(const json_t *body, json_t **err)
{
	char msg[96];

	if (json_is_object(body))
		return 0;
	snprintf(msg, sizeof(msg), "Invalid data. Expected a dictionary, but got %s.",
		 python_type_name(body));
	*err = json_pack("{s:[s]}", "non_field_errors", msg);
	return TOKEND_EINVAL;
}

static void add_error(json_t *errors, const char *name, const char *msg)
{
	json_object_set_new(errors, name, json_pack("[s]", msg));
}

const char *field_string(const json_t *body, const char *name, bool trim, size_t max,
			 json_t *errors, size_t *len)
{
	const json_t *v = field_get(body, name);
	const char *s;
	size_t n;
	char msg[96];

	if (v == NULL) {
		add_error(errors, name, "This field is required.");
		return NULL;
	}
	if (json_is_null(v)) {
		add_error(errors, name, "This field may not be null.");
		return NULL;
	}
	if (!json_is_string(v)) {
		add_error(errors, name, "Not a valid string.");
		return NULL;
	}
	s = json_string_value(v);
	n = json_string_length(v);
	if (memchr(s, '\0', n) != NULL) {
		add_error(errors, name, "Null characters are not allowed.");
		return NULL;
	}
	if (trim) {
		while (n > 0 && isspace((unsigned char)*s)) {
			s++;
			n--;
		}
		while (n > 0 && isspace((unsigned char)s[n - 1]))
			n--;
	}
	if (n == 0) {
		add_error(errors, name, "This field may not be blank.");
		return NULL;
	}
	if (n > max) { /* after trimming, as DRF's CharField */
		snprintf(msg, sizeof(msg), "Ensure this field has no more than %zu characters.",
			 max);
		add_error(errors, name, msg);
		return NULL;
	}
	*len = n;
	return s;
}
