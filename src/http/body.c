/* SPDX-License-Identifier: MIT */
/*
 * This module implements request-body decoding: JSON and
 * application/x-www-form-urlencoded, both into jansson values. A form keeps
 * a repeated key's every value (and a mark that it is a form), so that the
 * handlers' field helpers (src/handlers/fields.c) read a list field's all
 * and a string field's last, as DRF reads a QueryDict; a JSON body keeps
 * its strict types. It never sees libmicrohttpd.
 */
#include "tokend/body.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tokend/err.h"
#include "tokend/util.h"

/* Compares the media type (before ';', trimmed) of ct with want. */
static bool media_is(const char *ct, const char *want, const char **params)
{
	size_t n = strlen(want);

	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, want, n) != 0)
		return false;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (*ct != '\0' && *ct != ';')
		return false;
	*params = ct;
	return true;
}

/* True when params (";a=b; charset=x") name no charset or UTF-8. */
static bool charset_is_utf8(const char *params)
{
	const char *p = params;

	while ((p = strchr(p, ';')) != NULL) {
		const char *v;
		size_t len;

		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, "charset", 7) != 0)
			continue;
		v = p + 7;
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v != '=')
			return false;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v == '"')
			v++;
		len = strcspn(v, "\"; \t");
		if (!((len == 5 && strncasecmp(v, "utf-8", 5) == 0) ||
		      (len == 4 && strncasecmp(v, "utf8", 4) == 0)))
			return false;
	}
	return true;
}

enum body_type body_type_of(const char *content_type)
{
	const char *params;

	if (content_type == NULL || content_type[0] == '\0')
		return BODY_JSON;
	if (media_is(content_type, "application/json", &params))
		return charset_is_utf8(params) ? BODY_JSON : BODY_UNSUPPORTED;
	if (media_is(content_type, "application/x-www-form-urlencoded", &params))
		return charset_is_utf8(params) ? BODY_FORM : BODY_UNSUPPORTED;
	return BODY_UNSUPPORTED;
}

static json_t *detail(const char *msg)
{
	return json_pack("{s:s}", "detail", msg);
}

/*
 * Rejects nesting deeper than max_depth before jansson sees the text, so the
 * limit is ours (and jansson's recursion is never deep).
 */
static bool json_depth_ok(const char *s, size_t len, long max_depth)
{
	long depth = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == '[' || c == '{') {
			if (++depth > max_depth)
				return false;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decodes [s, s+len) into out (at least len bytes); '+' is a space. */
static int form_unescape(const char *s, size_t len, char *out, size_t *outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%') {
			int hi, lo;
			if (len - i < 3)
				return TOKEND_EINVAL;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return TOKEND_EINVAL;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	if (!util_utf8_valid(out, o))
		return TOKEND_EINVAL;
	*outlen = o;
	return 0;
}

/*
 * The key that marks a form-decoded body: one NUL byte. jansson refuses NUL
 * in a JSON object key, and body_form_decode refuses it in a form key.
 */
static const char form_mark[] = "";
#define FORM_MARK_LEN 1

/* Adds value v (stolen) under key: a second occurrence makes an array. */
static int form_add(json_t *obj, const char *key, json_t *v)
{
	json_t *old = json_object_get(obj, key);
	json_t *arr;

	if (old == NULL)
		return json_object_set_new(obj, key, v);
	if (json_is_array(old))
		return json_array_append_new(old, v);
	/* Every *_new call takes v, on failure too (jansson decrefs it then):
	 * v is ours to drop only until json_array_append_new has it. */
	arr = json_array();
	if (arr == NULL || json_array_append(arr, old) != 0) {
		json_decref(arr);
		json_decref(v);
		return -1;
	}
	if (json_array_append_new(arr, v) != 0) {
		json_decref(arr);
		return -1;
	}
	return json_object_set_new(obj, key, arr);
}

bool body_is_form(const json_t *body)
{
	return json_is_object(body) && json_object_getn(body, form_mark, FORM_MARK_LEN) != NULL;
}

int body_form_decode(const char *data, size_t len, json_t **out)
{
	json_t *obj = json_object();
	char *buf = malloc(len + 1);
	char *key = malloc(len + 1);
	size_t pos = 0;
	int rc = TOKEND_ENOMEM;

	if (obj == NULL || buf == NULL || key == NULL)
		goto out;
	rc = TOKEND_EINVAL;
	while (pos < len) {
		const char *pair = data + pos;
		const char *amp = memchr(pair, '&', len - pos);
		size_t plen = amp ? (size_t)(amp - pair) : len - pos;
		const char *eq = memchr(pair, '=', plen);
		size_t klen = eq ? (size_t)(eq - pair) : plen;
		size_t kout, vout = 0;
		json_t *v;

		pos += plen + 1;
		if (plen == 0)
			continue;
		if (form_unescape(pair, klen, key, &kout) != 0)
			goto out;
		if (memchr(key, '\0', kout) != NULL)
			goto out; /* a key with NUL cannot be an object key */
		key[kout] = '\0';
		if (eq != NULL && form_unescape(eq + 1, plen - klen - 1, buf, &vout) != 0)
			goto out;
		v = json_stringn_nocheck(buf, vout);
		if (v == NULL || form_add(obj, key, v) != 0) {
			rc = TOKEND_ENOMEM;
			goto out;
		}
	}
	*out = obj;
	obj = NULL;
	rc = 0;
out:
	json_decref(obj);
	free(buf);
	free(key);
	return rc;
}

/*
 * Writes the detail of a JSON parse error: what went wrong, from a fixed
 * list, and where, in the words of Python's json (so DRF): "line L column C
 * (char N)", N the 0-based character index. The place is jansson's, the
 * last character of the token it stopped at (Python's for a one-character
 * token; a bare word is read whole). Never jansson's text: it
 * quotes the token it stopped at ("near '\"hunter2\"'"), or a byte of it,
 * and that token is as often as not the password.
 */
static void parse_error_text(const char *data, size_t len, const json_error_t *jerr, char *out,
			     size_t outlen)
{
	const char *what;
	size_t end = jerr->position > 0 ? (size_t)jerr->position : 0;
	long chars = 0;
	int column = jerr->column > 0 ? jerr->column : 1;
	/* at the end, or at a byte that is not UTF-8: jansson stopped before
	 * the offending character, elsewhere just past it */
	bool before = json_error_code(jerr) == json_error_premature_end_of_input ||
		      json_error_code(jerr) == json_error_invalid_utf8;

	switch (json_error_code(jerr)) {
	case json_error_invalid_syntax: what = "Invalid syntax"; break;
	case json_error_premature_end_of_input: what = "Unexpected end of input"; break;
	case json_error_end_of_input_expected: what = "Extra data"; break;
	case json_error_invalid_utf8: what = "Invalid UTF-8"; break;
	case json_error_null_character: what = "Null character not allowed"; break;
	case json_error_numeric_overflow: what = "Number out of range"; break;
	case json_error_stack_overflow: what = "Nesting too deep"; break;
	default: what = "Invalid JSON"; break;
	}
	/* jansson's position is in bytes: count the characters (UTF-8 lead
	 * bytes) up to it. */
	if (end > len)
		end = len;
	for (size_t i = 0; i < end; i++)
		if (((unsigned char)data[i] & 0xc0) != 0x80)
			chars++;
	if (before)
		column++;
	else if (chars > 0)
		chars--;
	snprintf(out, outlen, "JSON parse error - %s: line %d column %d (char %ld)", what,
		 jerr->line > 0 ? jerr->line : 1, column, chars);
}

int body_decode(enum body_type type, const char *data, size_t len, long max_depth, json_t **out,
		json_t **err)
{
	json_error_t jerr;
	char msg[256];
	json_t *v;

	*out = NULL;
	*err = NULL;
	if (len == 0) {
		*out = json_object();
		return *out ? 0 : TOKEND_ENOMEM;
	}
	if (type == BODY_FORM) {
		int rc = body_form_decode(data, len, out);
		if (rc == TOKEND_EINVAL)
			*err = detail("Form parse error - invalid percent-encoding or UTF-8");
		if (rc == 0 && json_object_setn_new_nocheck(*out, form_mark, FORM_MARK_LEN,
							    json_true()) != 0) {
			json_decref(*out);
			*out = NULL;
			rc = TOKEND_ENOMEM;
		}
		return rc;
	}
	if (!json_depth_ok(data, len, max_depth)) {
		snprintf(msg, sizeof(msg), "JSON parse error - nesting deeper than %ld", max_depth);
		*err = detail(msg);
		return TOKEND_EINVAL;
	}
	/* jansson rejects invalid UTF-8 and \u0000 (no JSON_ALLOW_NUL). */
	v = json_loadb(data, len, JSON_DECODE_ANY, &jerr);
	if (v == NULL) {
		parse_error_text(data, len, &jerr, msg, sizeof(msg));
		*err = detail(msg);
		return TOKEND_EINVAL;
	}
	*out = v;
	return 0;
}
