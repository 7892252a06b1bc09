/* SPDX-License-Identifier: MIT */
/*
 * This suite tests the reader of `tokend user import` (src/cli/cli_import.h)
 * on in-memory input (fmemopen), no store involved. Properties:
 * - CSV follows RFC 4180: quoted fields with commas, doubled quotes and
 *   newlines, CRLF, columns in any order, a byte order mark, blank lines;
 *   a record's line is where it starts (a newline inside a quoted field is
 *   read, then refused in a username or a team name).
 * - JSONL skips blank lines and counts them; Django's dumpdata array is read
 *   an object at a time, braces inside strings included, with each object's
 *   line.
 * - Every hostile input ends in -1 with the line at fault: bad quoting, a
 *   record over IMPORT_RECORD_MAX, a NUL, invalid UTF-8, a non-object, an
 *   unknown field, an empty input, and hashes tokend cannot verify.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_import.h"

struct run {
	struct import_rec recs[8];
	int n;     /* records read */
	int rc;    /* the last import_next */
	long line; /* the line of the last call */
	char why[512];
};

static void read_all(const char *data, size_t len, enum import_format fmt, struct run *out)
{
	FILE *fp = fmemopen((void *)data, len, "r");
	struct import_reader *r;

	ck_assert_ptr_nonnull(fp);
	r = import_reader_new(fp, fmt);
	ck_assert_ptr_nonnull(r);
	memset(out, 0, sizeof(*out));
	for (;;) {
		struct import_rec rec;

		out->rc = import_next(r, &rec, &out->line, out->why, sizeof(out->why));
		if (out->rc <= 0)
			break;
		ck_assert_int_lt(out->n, 8);
		out->recs[out->n++] = rec;
	}
	import_reader_free(&r);
	ck_assert_ptr_null(r);
	fclose(fp);
}

static void read_str(const char *data, enum import_format fmt, struct run *out)
{
	read_all(data, strlen(data), fmt, out);
}

#define H1 "pbkdf2_sha256$1000$salt1$0123456789012345678901234567890123456789012="
#define H2 "pbkdf2_sha256$260000$abcDEF$ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq="

static void expect_fail(const struct run *r, long line, const char *needle)
{
	ck_assert_msg(r->rc == -1, "expected a failure, got %d", r->rc);
	ck_assert_msg(r->line == line, "failure at line %ld, expected %ld (%s)", r->line, line,
		      r->why);
	ck_assert_msg(strstr(r->why, needle) != NULL, "\"%s\" lacks \"%s\"", r->why, needle);
}

START_TEST(csv_rfc4180)
{
	static const char in[] = "\xef\xbb\xbfteams,password,username,is_active\r\n"
				 "\"a,b;c\"," H1 ",\"o,\"\"brien\"\"\",false\r\n"
				 "\r\n"
				 "\"x,\"\"y\"\"\"," H2 ",bob,\r\n"
				 "," H1 ",carol,1\n";
	struct run r;

	read_str(in, IMPORT_AUTO, &r);
	ck_assert_msg(r.rc == 0, "line %ld: %s", r.line, r.why);
	ck_assert_int_eq(r.n, 3);
	ck_assert_str_eq(r.recs[0].username, "o,\"brien\"");
	ck_assert(!r.recs[0].is_active);
	ck_assert_uint_eq(r.recs[0].n_teams, 2);
	ck_assert_str_eq(r.recs[0].teams[0], "a,b");
	ck_assert_str_eq(r.recs[0].teams[1], "c");
	ck_assert_int_eq(r.recs[0].line, 2);
	ck_assert_str_eq(r.recs[1].username, "bob");
	ck_assert(r.recs[1].is_active);
	ck_assert_str_eq(r.recs[1].teams[0], "x,\"y\"");
	ck_assert_str_eq(r.recs[1].hash, H2);
	ck_assert_int_eq(r.recs[1].line, 4);
	ck_assert_int_eq(r.recs[2].line, 5); /* after a blank line */
	ck_assert_uint_eq(r.recs[2].n_teams, 0);
}
END_TEST

START_TEST(csv_hostile)
{
	struct run r;
	char *big;

	read_str("username,password\n\"bob," H1 "\n", IMPORT_CSV, &r);
	expect_fail(&r, 2, "not closed");
	read_str("username,password\nb\"ob," H1 "\n", IMPORT_CSV, &r);
	expect_fail(&r, 2, "quote inside");
	read_str("username,password\nok," H1 "\n\"bob\"x," H1 "\n", IMPORT_CSV, &r);
	ck_assert_int_eq(r.n, 1);
	expect_fail(&r, 3, "after a closing quote");
	read_str("username,password\nbob\n", IMPORT_CSV, &r);
	expect_fail(&r, 2, "1 fields, the header has 2");
	read_str("username,pass\n", IMPORT_CSV, &r);
	expect_fail(&r, 1, "unknown column");
	read_str("username,username,password\n", IMPORT_CSV, &r);
	expect_fail(&r, 1, "twice");
	read_str("username\n", IMPORT_CSV, &r);
	expect_fail(&r, 1, "required");
	read_str("username,password\n\"a\nb\"," H1 "\n", IMPORT_CSV, &r);
	expect_fail(&r, 2, "control character"); /* the line where the record starts */
	read_all("username,password\nb\0b," H1 "\n", 18 + 4 + sizeof(H1), IMPORT_CSV, &r);
	expect_fail(&r, 2, "NUL");
	read_str("username,password\nb\xff," H1 "\n", IMPORT_CSV, &r);
	expect_fail(&r, 2, "UTF-8");
	read_str("username,password\nbob," H1 ",x\n", IMPORT_CSV, &r);
	expect_fail(&r, 2, "3 fields");
	read_str("username,password,teams\nbob," H1 ",a;;b\n", IMPORT_CSV, &r);
	expect_fail(&r, 2, "empty team name");
	read_str("username,password,is_active\nbob," H1 ",maybe\n", IMPORT_CSV, &r);
	expect_fail(&r, 2, "is_active");

	big = malloc(IMPORT_RECORD_MAX + 100);
	ck_assert_ptr_nonnull(big);
	memcpy(big, "username,password\n\"", 19);
	memset(big + 19, 'a', IMPORT_RECORD_MAX + 10);
	big[IMPORT_RECORD_MAX + 29] = '\0';
	read_str(big, IMPORT_CSV, &r);
	expect_fail(&r, 2, "longer than 65536");
	free(big);
}
END_TEST

START_TEST(jsonl_lines)
{
	static const char in[] = "{\"username\": \"a\", \"password\": \"" H1 "\"}\n"
				 "\n   \n"
				 "{\"username\": \"b\", \"password\": \"" H2
				 "\", \"is_active\": false,"
				 " \"teams\": [\"T 1\", \"0b8e2f6c-1111-4222-8333-944445555666\"]}";
	struct run r;

	read_str(in, IMPORT_AUTO, &r);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_int_eq(r.n, 2);
	ck_assert_int_eq(r.recs[1].line, 4);
	ck_assert(!r.recs[1].is_active);
	ck_assert_str_eq(r.recs[1].teams[0], "T 1");
	ck_assert_uint_eq(r.recs[1].n_teams, 2);
}
END_TEST

START_TEST(jsonl_hostile)
{
	struct run r;

	read_str("{\"username\": \"a\", \"password\": \"" H1 "\"}\n[1]\n", IMPORT_JSONL, &r);
	expect_fail(&r, 2, "not a JSON object");
	read_str("{\"username\": \"a\", \"password\": \"" H1 "\"}\n42\n", IMPORT_JSONL, &r);
	expect_fail(&r, 2, "not a JSON object");
	read_str("{\"username\": \"a\"\n", IMPORT_JSONL, &r);
	expect_fail(&r, 1, "not valid JSON");
	read_str("{\"username\": \"a\\u0000b\", \"password\": \"" H1 "\"}\n", IMPORT_JSONL, &r);
	expect_fail(&r, 1, "not valid JSON");
	read_str("{\"username\": \"a\", \"username\": \"b\", \"password\": \"" H1 "\"}\n",
		 IMPORT_JSONL, &r);
	expect_fail(&r, 1, "not valid JSON");
	read_str("{\"username\": \"a\", \"password\": \"" H1 "\", \"x\": 1}\n", IMPORT_JSONL, &r);
	expect_fail(&r, 1, "unknown field");
	read_str("{\"username\": \"a\", \"password\": \"" H1 "\", \"is_active\": 1}\n",
		 IMPORT_JSONL, &r);
	expect_fail(&r, 1, "is_active");
	read_str("{\"username\": \"a\", \"password\": \"" H1 "\", \"teams\": [1]}\n", IMPORT_JSONL,
		 &r);
	expect_fail(&r, 1, "teams");
	read_str("{\"password\": \"" H1 "\"}\n", IMPORT_JSONL, &r);
	expect_fail(&r, 1, "no username");
	read_str("{\"username\": \"a\"}\n", IMPORT_JSONL, &r);
	expect_fail(&r, 1, "no password");
}
END_TEST

START_TEST(django_array)
{
	static const char in[] =
		"[\n"
		"{\n  \"model\": \"auth.user\",\n  \"pk\": 1,\n  \"fields\": {\n"
		"    \"password\": \"" H1 "\",\n    \"username\": \"ann\",\n"
		"    \"first_name\": \"}{][\\\"\",\n    \"is_active\": true,\n"
		"    \"groups\": [1, 2],\n    \"teams\": 5\n  }\n},\n"
		"{\"model\": \"accounts.user\", \"pk\": 2, \"fields\": {\"username\": \"ben\","
		" \"password\": \"" H2 "\", \"is_active\": false}}\n]\n";
	struct run r;

	read_str(in, IMPORT_AUTO, &r);
	ck_assert_msg(r.rc == 0, "%s", r.why);
	ck_assert_int_eq(r.n, 2);
	ck_assert_str_eq(r.recs[0].username, "ann");
	ck_assert_int_eq(r.recs[0].line, 2);
	ck_assert_uint_eq(r.recs[0].n_teams, 0); /* dumpdata has no teams */
	ck_assert_str_eq(r.recs[1].username, "ben");
	ck_assert_int_eq(r.recs[1].line, 14);
	ck_assert(!r.recs[1].is_active);

	read_str("[]", IMPORT_DJANGO, &r);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_int_eq(r.n, 0);
}
END_TEST

START_TEST(django_hostile)
{
	struct run r;

	read_str("{\"username\": \"a\"}", IMPORT_DJANGO, &r);
	expect_fail(&r, 1, "not a JSON array");
	read_str("[\n 5]", IMPORT_DJANGO, &r);
	expect_fail(&r, 2, "not an object");
	read_str("[{\"model\": \"auth.group\", \"fields\": {}}]", IMPORT_DJANGO, &r);
	expect_fail(&r, 1, "not a user");
	read_str("[{\"model\": \"auth.user\"}]", IMPORT_DJANGO, &r);
	expect_fail(&r, 1, "fields");
	read_str("[{\"model\": \"auth.user\", \"fields\": {\"username\": \"a\", \"password\": \"" H1
		 "\"}}\n\n{}",
		 IMPORT_DJANGO, &r);
	ck_assert_int_eq(r.n, 1);
	expect_fail(&r, 3, "expected");
	read_str("[{\"model\": \"auth.user\", \"fields\": {\"username\": \"a\"", IMPORT_DJANGO, &r);
	expect_fail(&r, 1, "ends inside an object");
	read_str("[{\"model\": \"auth.user\", \"fields\": {\"username\": \"a\", \"password\": \"" H1
		 "\"}}] x",
		 IMPORT_DJANGO, &r);
	expect_fail(&r, 1, "after the JSON array");
}
END_TEST

START_TEST(empty_inputs)
{
	struct run r;

	read_str("", IMPORT_AUTO, &r);
	expect_fail(&r, 1, "empty input");
	read_str(" \n\t\n", IMPORT_AUTO, &r);
	expect_fail(&r, 3, "empty input");
	read_str("", IMPORT_CSV, &r);
	expect_fail(&r, 1, "empty input");
	read_str("username,password\n", IMPORT_CSV, &r);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_int_eq(r.n, 0);
}
END_TEST

static bool check(const char *s)
{
	char why[256];

	return import_hash_check(s, strlen(s), why, sizeof(why));
}

static void refused(const char *s, const char *needle)
{
	char why[256] = "";

	ck_assert_msg(!import_hash_check(s, strlen(s), why, sizeof(why)), "%s accepted", s);
	ck_assert_msg(strstr(why, needle) != NULL, "%s: \"%s\" lacks \"%s\"", s, why, needle);
}

START_TEST(hashes)
{
	ck_assert(check(H1));
	ck_assert(check(H2));
	ck_assert(check("pbkdf2_sha256$100000000$s$0123456789012345678901234567890123456789012="));
	refused("hunter2", "plain passwords");
	refused("", "empty");
	refused("pbkdf2_sha256$0$s$0123456789012345678901234567890123456789012=",
		"iteration count");
	refused("pbkdf2_sha256$100000001$s$0123456789012345678901234567890123456789012=",
		"iteration count");
	refused("pbkdf2_sha256$99999999999999999999999$s$0123456789012345678901234567890123456789012=",
		"iteration count");
	refused("pbkdf2_sha256$-1$s$0123456789012345678901234567890123456789012=",
		"iteration count");
	refused("pbkdf2_sha256$01000$s$0123456789012345678901234567890123456789012=",
		"iteration count");
	refused("pbkdf2_sha256$$s$0123456789012345678901234567890123456789012=",
		"without an iteration");
	refused("pbkdf2_sha256$1000$s$short", "malformed");
	refused("pbkdf2_sha256$1000$$0123456789012345678901234567890123456789012=", "malformed");
	refused("argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA",
		"\"argon2\" is not supported");
	refused("pbkdf2_sha1$1000$s$abc", "\"pbkdf2_sha1\" is not supported");
	refused("!unusable", "unusable");
	ck_assert(!import_hash_check(H1 "x", sizeof(H1), (char[64]){0}, 64));
	{
		char with_nul[] = H1;
		char why[128];

		with_nul[5] = '\0';
		ck_assert(!import_hash_check(with_nul, sizeof(with_nul) - 1, why, sizeof(why)));
		ck_assert(strstr(why, "NUL") != NULL);
	}
}
END_TEST

START_TEST(username_limits)
{
	char in[512];
	char name[STORE_NAME_MAX + 2];
	struct run r;

	memset(name, 'u', sizeof(name) - 1);
	name[STORE_NAME_MAX] = '\0';
	snprintf(in, sizeof(in), "username,password\n%s,%s\n", name, H1);
	read_str(in, IMPORT_CSV, &r);
	ck_assert_int_eq(r.n, 1); /* 150 bytes: accepted */
	name[STORE_NAME_MAX] = 'u';
	name[STORE_NAME_MAX + 1] = '\0';
	snprintf(in, sizeof(in), "username,password\n%s,%s\n", name, H1);
	read_str(in, IMPORT_CSV, &r);
	expect_fail(&r, 2, "longer than 150 bytes");
	read_str("username,password\nb\x1b[2Jx," H1 "\n", IMPORT_CSV, &r);
	expect_fail(&r, 2, "b\\x1b[2Jx"); /* shown escaped */
}
END_TEST

static Suite *import_suite(void)
{
	Suite *s = suite_create("import");
	TCase *tc = tcase_create("reader");

	tcase_add_test(tc, csv_rfc4180);
	tcase_add_test(tc, csv_hostile);
	tcase_add_test(tc, jsonl_lines);
	tcase_add_test(tc, jsonl_hostile);
	tcase_add_test(tc, django_array);
	tcase_add_test(tc, django_hostile);
	tcase_add_test(tc, empty_inputs);
	tcase_add_test(tc, hashes);
	tcase_add_test(tc, username_limits);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(import_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
