/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/log.h: level and format names, that
 * logging and access lines with hostile bytes do not crash, the JSON
 * escaper (controls, quotes, invalid UTF-8, never half an escape) and the
 * request id's checks.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokend/log.h"

START_TEST(level_parse)
{
	ck_assert_int_eq(log_level_parse("debug"), LOG_DEBUG);
	ck_assert_int_eq(log_level_parse("info"), LOG_INFO);
	ck_assert_int_eq(log_level_parse("warn"), LOG_WARN);
	ck_assert_int_eq(log_level_parse("error"), LOG_ERROR);
	ck_assert_int_eq(log_level_parse(""), -1);
	ck_assert_int_eq(log_level_parse("warning"), -1);
	ck_assert_int_eq(log_level_parse("inf"), -1);
	ck_assert_int_eq(log_level_parse("info "), -1);
	ck_assert_int_eq(log_level_parse("trace"), -1);
	ck_assert_int_eq(log_level_parse("fatal"), -1);
}
END_TEST

/* Runs fn with stderr sent to a temporary file; returns what it wrote. */
static char *capture(void (*fn)(void), size_t *len)
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *buf;
	long n;

	ck_assert_ptr_nonnull(tmp);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fileno(tmp), STDERR_FILENO), 0);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = lseek(fileno(tmp), 0, SEEK_CUR);
	ck_assert_int_ge(n, 0);
	buf = calloc(1, (size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	rewind(tmp);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, tmp), (size_t)n);
	fclose(tmp);
	*len = (size_t)n;
	return buf;
}

static void hostile_access(void)
{
	char path[400];

	memset(path, 'a', sizeof path - 1);
	path[sizeof path - 1] = '\0';
	memcpy(path, "/x\r\nFAKE \x01\xff\x7f", 12);
	log_set_access(1);
	log_access("127.0.0.1", "G\nET", path, 404, 12, 34, "0123456789abcdef");
}

START_TEST(access_escapes)
{
	size_t len = 0;
	char *out = capture(hostile_access, &len);
	size_t run = 0, longest = 0;

	/* exactly one line */
	ck_assert_uint_gt(len, 0);
	ck_assert_int_eq(out[len - 1], '\n');
	ck_assert_ptr_eq(strchr(out, '\n'), out + len - 1);
	for (size_t i = 0; i + 1 < len; i++)
		ck_assert_msg((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] < 0x7f,
			      "raw byte 0x%02x in access line", (unsigned char)out[i]);
	ck_assert_msg(strstr(out, "\\x0d\\x0a") || strstr(out, "\\x0D\\x0A"), "line: %s", out);
	ck_assert_msg(strstr(out, "\\x01") != NULL, "line: %s", out);
	ck_assert_msg(strstr(out, "\\xff") || strstr(out, "\\xFF"), "line: %s", out);
	ck_assert_msg(strstr(out, "G\\x0aET") || strstr(out, "G\\x0AET"), "line: %s", out);
	ck_assert_ptr_nonnull(strstr(out, " 404 "));
	/*
	 * The path is cut at 256 bytes: of its 387 'a's, 256 - 12 remain if the
	 * cut counts input bytes, 256 - 27 if it counts escaped output.
	 */
	for (size_t i = 0; i < len; i++) {
		run = out[i] == 'a' ? run + 1 : 0;
		if (run > longest)
			longest = run;
	}
	ck_assert_uint_le(longest, 256 - 12);
	ck_assert_uint_ge(longest, 256 - 27);
	free(out);
}
END_TEST

static void levels(void)
{
	log_set_level(LOG_WARN);
	log_info("hidden-info");
	log_debug("hidden-debug");
	log_warn("shown-warn %d", 7);
	log_error("shown-error");
	log_set_level(LOG_INFO);
	log_set_access(0);
	log_access("::1", "POST", "/hidden-access", 201, 0, 0, "0123456789abcdef");
	log_set_access(1);
}

START_TEST(level_filter)
{
	size_t len = 0;
	char *out = capture(levels, &len);

	ck_assert_ptr_null(strstr(out, "hidden"));
	ck_assert_ptr_nonnull(strstr(out, "shown-warn 7\n"));
	ck_assert_ptr_nonnull(strstr(out, "shown-error\n"));
	free(out);
}
END_TEST

static void plain_lines(void)
{
	char path[400];

	log_set_level(LOG_ERROR);
	log_debug("hidden %d", 1);
	log_info("hidden %s", "x");
	log_set_level(LOG_DEBUG);
	log_debug("shown %d", 2);
	log_set_access(1);
	memset(path, 'a', sizeof path - 1);
	path[sizeof path - 1] = '\0';
	log_access("127.0.0.1", "GE\x7fT", path, 404, 12, 34, "0123456789abcdef");
	log_set_access(0);
	log_access("::1", "POST", "/x", 201, 0, 0, "0123456789abcdef");
	log_set_access(1);
	log_set_level(LOG_INFO);
}

START_TEST(log_lines)
{
	size_t len = 0;
	char *out = capture(plain_lines, &len);
	int lines = 0;

	for (size_t i = 0; i < len; i++)
		lines += out[i] == '\n';
	ck_assert_int_eq(lines, 2);
	ck_assert_ptr_nonnull(strstr(out, " debug shown 2\n"));
	ck_assert_ptr_nonnull(strstr(out, "GE\\x7fT"));
	free(out);
}
END_TEST

START_TEST(json_escape)
{
	char out[64];
	bool cut = true;
	size_t n;

	n = log_json_escape("a\"b\\c\n\t\r\x01\x7f", 10, out, sizeof(out), 64, &cut);
	ck_assert_str_eq(out, "a\\\"b\\\\c\\n\\t\\r\\u0001\\u007f");
	ck_assert_uint_eq(n, strlen(out));
	ck_assert(!cut);
	/* valid UTF-8 as is; a lone continuation, a truncated sequence, an
	 * overlong '/', a surrogate and a byte past U+10FFFF as U+FFFD each */
	log_json_escape("\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80", 9, out, sizeof(out), 64, NULL);
	ck_assert_str_eq(out, "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80");
	log_json_escape("\x80|\xc3|\xc0\xaf|\xed\xa0\x80|\xf5", 12, out, sizeof(out), 64, NULL);
	ck_assert_str_eq(out, "\\ufffd|\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd");
	/* NUL inside the length is escaped, not an end */
	log_json_escape("a\0b", 3, out, sizeof(out), 64, NULL);
	ck_assert_str_eq(out, "a\\u0000b");
	/* an escape that does not fit is left out whole */
	n = log_json_escape("ab\x01", 3, out, 7, 64, &cut);
	ck_assert_str_eq(out, "ab");
	ck_assert(cut);
	n = log_json_escape("abcdef", 6, out, sizeof(out), 3, &cut);
	ck_assert_str_eq(out, "abc");
	ck_assert(cut);
}
END_TEST

START_TEST(request_ids)
{
	char a[LOG_REQUEST_ID_MAX + 1], b[LOG_REQUEST_ID_MAX + 1];
	char big[LOG_REQUEST_ID_MAX + 2];

	ck_assert_int_eq(log_format_parse("text"), LOG_TEXT);
	ck_assert_int_eq(log_format_parse("json"), LOG_JSON);
	ck_assert_int_eq(log_format_parse("JSON"), -1);
	log_request_id_new(a);
	log_request_id_new(b);
	ck_assert_uint_eq(strlen(a), LOG_REQUEST_ID_LEN);
	ck_assert_str_ne(a, b);
	ck_assert(log_request_id_ok(a, strlen(a)));
	ck_assert(log_request_id_ok("!#$%&'*+-.^_`|~09azAZ", 21));
	memset(big, 'a', sizeof(big));
	ck_assert(log_request_id_ok(big, LOG_REQUEST_ID_MAX));
	ck_assert(!log_request_id_ok(big, LOG_REQUEST_ID_MAX + 1));
	ck_assert(!log_request_id_ok("", 0));
	ck_assert(!log_request_id_ok("a\0b", 3));
	ck_assert(!log_request_id_ok("a b", 3));
	ck_assert(!log_request_id_ok("a\"b", 3));
	ck_assert(!log_request_id_ok("a\\b", 3));
	ck_assert(!log_request_id_ok("a\xc3\xa9", 3));
}
END_TEST

static void json_lines(void)
{
	log_set_format(LOG_JSON);
	log_info("quote \" nl \n %s", "\xff");
	log_access("127.0.0.1", "GET", "/\"x\n", 404, 1, 2, "id\"1");
	log_set_format(LOG_TEXT);
}

START_TEST(json_format)
{
	size_t len = 0;
	char *out = capture(json_lines, &len);

	ck_assert_msg(strstr(out,
			     "\"level\":\"info\",\"message\":\"quote \\\" nl \\n \\ufffd\"}\n") !=
			      NULL,
		      "%s", out);
	ck_assert_msg(strstr(out,
			     "\"message\":\"access\",\"client\":\"127.0.0.1\",\"method\":\"GET\","
			     "\"path\":\"/\\\"x\\n\",\"status\":404,\"us\":1,\"bytes\":2,"
			     "\"request_id\":\"id\\\"1\"}\n") != NULL,
		      "%s", out);
	free(out);
}
END_TEST

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_test(tc, level_parse);
	tcase_add_test(tc, log_lines);
	tcase_add_test(tc, access_escapes);
	tcase_add_test(tc, level_filter);
	tcase_add_test(tc, json_escape);
	tcase_add_test(tc, request_ids);
	tcase_add_test(tc, json_format);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(log_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
