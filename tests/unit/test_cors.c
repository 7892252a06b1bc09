/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/cors.h. Properties proven:
 * - an entry is scheme://host[:port] and nothing else: a path or trailing
 *   slash, "*", a missing or other scheme, userinfo, a query or fragment,
 *   an empty or malformed host or port, a numeric host that is not a
 *   dotted quad, control or non-ASCII bytes, an over-long entry or list are
 *   each refused with a reason and leave the list unchanged;
 * - entries are normalised as a browser serialises an origin (lowercase
 *   scheme and host, default port dropped, leading zeros of a port dropped,
 *   IPv6 compressed), duplicates after normalisation counted once;
 * - the match is byte for byte: an Origin that differs from an entry only in
 *   case, port, a trailing slash or a trailing NUL byte does not match, nor
 *   does "null", nor a prefix or an extension of an entry;
 * - the formatted list reads back to the same list;
 * - method lists match exact methods only.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "tokend/cors.h"
#include "tokend/err.h"

static struct cors_origins parse_ok(const char *text)
{
	struct cors_origins l;
	char reason[256] = "";

	memset(&l, 0, sizeof l);
	ck_assert_msg(cors_origins_add(&l, text, reason, sizeof reason) == 0, "\"%s\" refused: %s",
		      text, reason);
	return l;
}

static void refused(const char *text)
{
	struct cors_origins l, before;
	char reason[256] = "";

	memset(&l, 0, sizeof l);
	ck_assert_int_eq(cors_origins_add(&l, "http://keep.example", reason, sizeof reason), 0);
	before = l;
	ck_assert_msg(cors_origins_add(&l, text, reason, sizeof reason) == TOKEND_EINVAL,
		      "\"%s\" accepted", text);
	ck_assert_msg(reason[0] != '\0', "\"%s\": no reason", text);
	ck_assert_msg(memcmp(&l, &before, sizeof l) == 0, "\"%s\" changed the list", text);
}

static void normalised(const char *text, const char *want)
{
	struct cors_origins l = parse_ok(text);

	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.o[0].text, want);
	ck_assert_uint_eq(l.o[0].len, strlen(want));
}

static bool matches(const struct cors_origins *l, const char *origin)
{
	return cors_origin_match(l, origin, strlen(origin)) != NULL;
}

START_TEST(accepts_and_normalises)
{
	normalised("http://127.0.0.1:5000", "http://127.0.0.1:5000");
	normalised("https://app.example", "https://app.example");
	normalised("HTTPS://App.Example", "https://app.example");
	normalised("https://app.example:443", "https://app.example");
	normalised("http://app.example:80", "http://app.example");
	normalised("http://app.example:443", "http://app.example:443");
	normalised("https://app.example:80", "https://app.example:80");
	normalised("https://app.example:08443", "https://app.example:8443");
	normalised("http://localhost:3000", "http://localhost:3000");
	normalised("http://a-b.c_d.example", "http://a-b.c_d.example");
	normalised("https://xn--bcher-kva.example", "https://xn--bcher-kva.example");
	normalised("http://[::1]:8080", "http://[::1]:8080");
	normalised("http://[0:0:0:0:0:0:0:1]", "http://[::1]");
	normalised("http://[2001:DB8:0:0:1:0:0:1]", "http://[2001:db8::1:0:0:1]");
	normalised("http://[2001:db8:0:1:1:1:1:1]", "http://[2001:db8:0:1:1:1:1:1]");
	normalised("http://[::ffff:1.2.3.4]", "http://[::ffff:102:304]");
	normalised("http://[::]", "http://[::]");
	normalised("  ,https://app.example,, ", "https://app.example");
}
END_TEST

START_TEST(several_entries)
{
	struct cors_origins l = parse_ok("https://a.example http://b.example:81,\thttps://c.example"
					 " , https://A.example:443");

	ck_assert_uint_eq(l.n, 3); /* the last is a's duplicate */
	ck_assert_str_eq(l.o[0].text, "https://a.example");
	ck_assert_str_eq(l.o[1].text, "http://b.example:81");
	ck_assert_str_eq(l.o[2].text, "https://c.example");

	/* appending (a continued line in a file) */
	char reason[128];
	ck_assert_int_eq(cors_origins_add(&l, "https://d.example https://c.example", reason,
					  sizeof reason),
			 0);
	ck_assert_uint_eq(l.n, 4);
	ck_assert_str_eq(l.o[3].text, "https://d.example");

	l = parse_ok("");
	ck_assert_uint_eq(l.n, 0);
	l = parse_ok(" , \t");
	ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(refuses_bad_entries)
{
	static const char *const bad[] = {
		"*",
		"https://*",
		"https://*.example",
		"null",
		"app.example",
		"//app.example",
		"app.example:443",
		"https:/app.example",
		"https:app.example",
		"https://",
		"https://:443",
		"https://app.example/",
		"https://app.example/path",
		"https://app.example:443/",
		"https://app.example?x=1",
		"https://app.example#top",
		"https://user@app.example",
		"https://user:pw@app.example",
		"ftp://app.example",
		"file://app.example",
		"ws://app.example",
		"chrome-extension://abc",
		"https://app.example:",
		"https://app.example:0",
		"https://app.example:65536",
		"https://app.example:99999999999999999999",
		"https://app.example:-1",
		"https://app.example:8a",
		"https://app..example",
		"https://.app.example",
		"https://app.example.",
		"https://app%2eexample",
		"https://app.ex ample",
		"https://app.exämple",
		"https://app.example\x01",
		"https://[::1",
		"https://[::1]x",
		"https://[not:an:ip]",
		"https://[]",
		"https://::1",
		"http://127.1",
		"http://256.0.0.1",
		"http://1.2.3.4.5",
		"http://0x7f.0.0.1",
		"http://1.2.3.04",
		"http://example.123",
		"https://app.example https://x.example/",
		"garbage",
		"\"https://app.example\"",
		"https://app.example;x",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		refused(bad[i]);
}
END_TEST

START_TEST(refuses_long)
{
	char host[400], text[1200];
	struct cors_origins l;
	char reason[256];
	size_t used = 0;

	memset(host, 'a', sizeof host);
	host[CORS_ORIGIN_MAX - 8 + 1] = '\0'; /* "https://" + host is one byte too long */
	snprintf(text, sizeof text, "https://%s", host);
	refused(text);
	host[CORS_ORIGIN_MAX - 8] = '\0'; /* exactly the limit */
	snprintf(text, sizeof text, "https://%s", host);
	l = parse_ok(text);
	ck_assert_uint_eq(l.o[0].len, CORS_ORIGIN_MAX);

	/* CORS_MAX_ORIGINS entries fit, one more does not */
	memset(&l, 0, sizeof l);
	for (int i = 0; i < CORS_MAX_ORIGINS; i++)
		used += (size_t)snprintf(text + used, sizeof text - used, "https://h%d.example ",
					 i);
	ck_assert_int_eq(cors_origins_add(&l, text, reason, sizeof reason), 0);
	ck_assert_uint_eq(l.n, CORS_MAX_ORIGINS);
	ck_assert_int_eq(cors_origins_add(&l, "https://h0.example", reason, sizeof reason), 0);
	ck_assert_int_eq(cors_origins_add(&l, "https://one-more.example", reason, sizeof reason),
			 TOKEND_EINVAL);
	ck_assert_uint_eq(l.n, CORS_MAX_ORIGINS);
}
END_TEST

START_TEST(reason_names_the_entry)
{
	struct cors_origins l;
	char reason[256] = "";

	memset(&l, 0, sizeof l);
	ck_assert_int_eq(cors_origins_add(&l, "https://ok.example https://bad.example/", reason,
					  sizeof reason),
			 TOKEND_EINVAL);
	ck_assert_msg(strstr(reason, "\"https://bad.example/\"") != NULL, "%s", reason);
	ck_assert_uint_eq(l.n, 0); /* nothing of a refused text is kept */
}
END_TEST

START_TEST(match_is_exact)
{
	struct cors_origins l = parse_ok("http://127.0.0.1:5000 https://App.Example:443");
	const char *m;

	ck_assert(matches(&l, "http://127.0.0.1:5000"));
	ck_assert(matches(&l, "https://app.example"));
	m = cors_origin_match(&l, "https://app.example", 19);
	ck_assert_ptr_eq(m, l.o[1].text); /* the configured copy, not the request's */

	ck_assert(!matches(&l, "http://127.0.0.1:5000/"));
	ck_assert(!matches(&l, "HTTP://127.0.0.1:5000"));
	ck_assert(!matches(&l, "http://127.0.0.1:5001"));
	ck_assert(!matches(&l, "http://127.0.0.1"));
	ck_assert(!matches(&l, "http://127.0.0.1:500"));
	ck_assert(!matches(&l, "http://127.0.0.1:50000"));
	ck_assert(!matches(&l, "https://127.0.0.1:5000"));
	ck_assert(!matches(&l, "https://App.Example"));
	ck_assert(!matches(&l, "https://app.example:443"));
	ck_assert(!matches(&l, "https://app.example/"));
	ck_assert(!matches(&l, "https://app.example.evil"));
	ck_assert(!matches(&l, "https://evil-app.example"));
	ck_assert(!matches(&l, "null"));
	ck_assert(!matches(&l, ""));
	ck_assert(!matches(&l, "*"));
	/* a NUL inside the given length is a different value */
	ck_assert_ptr_null(cors_origin_match(&l, "https://app.example\0", 20));
	ck_assert_ptr_null(cors_origin_match(&l, "https://app.exampl", 18));

	memset(&l, 0, sizeof l);
	ck_assert(!matches(&l, "http://127.0.0.1:5000"));
	ck_assert(!matches(&l, ""));
}
END_TEST

START_TEST(format_reads_back)
{
	struct cors_origins l = parse_ok("HTTPS://A.example:443, http://[0::1]:80 http://b:8080");
	struct cors_origins again;
	char text[CORS_MAX_ORIGINS * (CORS_ORIGIN_MAX + 1)];
	char small[12];

	cors_origins_format(&l, text, sizeof text);
	ck_assert_str_eq(text, "https://a.example http://[::1] http://b:8080");
	again = parse_ok(text);
	ck_assert_uint_eq(again.n, l.n);
	for (unsigned i = 0; i < l.n; i++)
		ck_assert_str_eq(again.o[i].text, l.o[i].text);
	cors_origins_format(&l, small, sizeof small);
	ck_assert_uint_eq(strlen(small), sizeof small - 1);
	memset(&l, 0, sizeof l);
	cors_origins_format(&l, text, sizeof text);
	ck_assert_str_eq(text, "");
}
END_TEST

START_TEST(method_lists)
{
	ck_assert(cors_method_listed("POST", "POST", 4));
	ck_assert(cors_method_listed("GET, HEAD, POST", "GET", 3));
	ck_assert(cors_method_listed("GET, HEAD, POST", "HEAD", 4));
	ck_assert(cors_method_listed("GET, HEAD, POST", "POST", 4));
	ck_assert(!cors_method_listed("GET, HEAD, POST", "post", 4));
	ck_assert(!cors_method_listed("GET, HEAD, POST", "PUT", 3));
	ck_assert(!cors_method_listed("GET, HEAD, POST", "GE", 2));
	ck_assert(!cors_method_listed("GET, HEAD, POST", "HEAD, POST", 10));
	ck_assert(!cors_method_listed("GET, HEAD, POST", "", 0));
	ck_assert(!cors_method_listed("", "GET", 3));
	ck_assert(!cors_method_listed("POST", "POSTX", 5));
	ck_assert(!cors_method_listed("POST", "POST\0", 5));
}
END_TEST

static Suite *cors_suite(void)
{
	Suite *s = suite_create("cors");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, accepts_and_normalises);
	tcase_add_test(tc, several_entries);
	tcase_add_test(tc, refuses_bad_entries);
	tcase_add_test(tc, refuses_long);
	tcase_add_test(tc, reason_names_the_entry);
	tcase_add_test(tc, match_is_exact);
	tcase_add_test(tc, format_reads_back);
	tcase_add_test(tc, method_lists);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cors_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
