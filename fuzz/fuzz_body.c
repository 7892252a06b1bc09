/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for request-body decoding: the first byte picks JSON or
 * form data, the rest is the body. Whatever the bytes, decoding must end in
 * a value or an error body, without crashing or leaking, and a decoded
 * object must survive field validation.
 */
#include <stddef.h>
#include <stdint.h>

#include "handlers/fields.h"
#include "tokend/body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *out = NULL, *err = NULL, *errors;
	size_t len;

	if (size == 0)
		return 0;
	enum body_type t = (data[0] & 1) ? BODY_FORM : BODY_JSON;
	if (body_decode(t, (const char *)data + 1, size - 1, 32, &out, &err) == 0) {
		errors = json_object();
		if (field_require_object(out, &err) == 0) {
			(void)field_string(out, "username", true, 4096, errors, &len);
			(void)field_string(out, "password", false, 4096, errors, &len);
		}
		json_decref(errors);
	}
	json_decref(out);
	json_decref(err);
	return 0;
}
