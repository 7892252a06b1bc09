/* SPDX-License-Identifier: MIT */
/*
 * This suite tests the small helpers of include/tokend/util.h (base64url,
 * UUIDs, RFC 3339 times written and parsed, UTF-8 validation) and tokend_strerror() of err.h,
 * mostly along their hostile paths: padding, foreign alphabets, trailing
 * bits, overlongs, surrogates and short buffers.
 */
#include <check.h>
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/util.h"

/* ---- base64url ---------------------------------------------------------- */

static void roundtrip(const unsigned char *in, size_t len, const char *expect)
{
	char enc[256];
	unsigned char dec[256];
	size_t declen = 999;
	size_t n = util_b64url_encode(in, len, enc, sizeof enc);

	ck_assert_uint_eq(n, strlen(expect));
	ck_assert_str_eq(enc, expect);
	ck_assert_int_eq(util_b64url_decode(enc, n, dec, sizeof dec, &declen), 0);
	ck_assert_uint_eq(declen, len);
	if (len > 0)
		ck_assert_mem_eq(dec, in, len);
}

START_TEST(b64_vectors)
{
	roundtrip((const unsigned char *)"", 0, "");
	roundtrip((const unsigned char *)"f", 1, "Zg");
	roundtrip((const unsigned char *)"fo", 2, "Zm8");
	roundtrip((const unsigned char *)"foo", 3, "Zm9v");
	roundtrip((const unsigned char *)"foob", 4, "Zm9vYg");
	roundtrip((const unsigned char *)"\xff\xfe\xfd", 3, "__79");
	roundtrip((const unsigned char *)"\xfb\xff", 2, "-_8");
}
END_TEST

START_TEST(b64_roundtrip_all_lengths)
{
	unsigned char in[100];
	char enc[200];
	unsigned char dec[100];

	for (size_t i = 0; i < sizeof in; i++)
		in[i] = (unsigned char)(i * 37 + 11);
	for (size_t len = 0; len <= sizeof in; len++) {
		size_t declen = 0;
		size_t n = util_b64url_encode(in, len, enc, sizeof enc);
		ck_assert_uint_eq(n, (len * 4 + 2) / 3);
		ck_assert_uint_eq(strlen(enc), n);
		ck_assert_int_eq(util_b64url_decode(enc, n, dec, sizeof dec, &declen), 0);
		ck_assert_uint_eq(declen, len);
		if (len)
			ck_assert_mem_eq(dec, in, len);
	}
}
END_TEST

static int dec(const char *s)
{
	unsigned char out[64];
	size_t outlen = 0;
	return util_b64url_decode(s, strlen(s), out, sizeof out, &outlen);
}

START_TEST(b64_decode_rejects)
{
	ck_assert_int_eq(dec("Zg=="), TOKEND_EINVAL); /* padding */
	ck_assert_int_eq(dec("Zg="), TOKEND_EINVAL);
	ck_assert_int_eq(dec("Zm9v="), TOKEND_EINVAL);
	ck_assert_int_eq(dec("++/+"), TOKEND_EINVAL); /* standard alphabet */
	ck_assert_int_eq(dec("ab+d"), TOKEND_EINVAL);
	ck_assert_int_eq(dec("ab/d"), TOKEND_EINVAL);
	ck_assert_int_eq(dec("Zm9 v"), TOKEND_EINVAL); /* whitespace */
	ck_assert_int_eq(dec("Zm9v\n"), TOKEND_EINVAL);
	ck_assert_int_eq(dec(" Zm9v"), TOKEND_EINVAL);
	ck_assert_int_eq(dec("Zm9\tv"), TOKEND_EINVAL);
	ck_assert_int_eq(dec("Zh"), TOKEND_EINVAL);  /* non-zero trailing bits */
	ck_assert_int_eq(dec("Zm9"), TOKEND_EINVAL); /* "fo" is Zm8 */
	ck_assert_int_eq(dec("Zm8"), 0);
	ck_assert_int_eq(dec("Zm9w"), 0);
	ck_assert_int_eq(dec("Zh9"), TOKEND_EINVAL);
	ck_assert_int_eq(dec("Zm-"), TOKEND_EINVAL);
	ck_assert_int_eq(dec("Z"), TOKEND_EINVAL); /* impossible length */
	ck_assert_int_eq(dec("Zm9vY"), TOKEND_EINVAL);
	ck_assert_int_eq(dec("Zm.v"), TOKEND_EINVAL);
	ck_assert_int_eq(dec("Zm9\xc3\xa9"), TOKEND_EINVAL);
}
END_TEST

START_TEST(b64_decode_embedded_nul_in_text)
{
	unsigned char out[16];
	size_t outlen = 0;
	/* "Zm\0v": the NUL is inside len and is not a base64url character */
	ck_assert_int_eq(util_b64url_decode("Zm\0v", 4, out, sizeof out, &outlen), TOKEND_EINVAL);
}
END_TEST

START_TEST(b64_decode_respects_len)
{
	unsigned char out[16];
	size_t outlen = 0;
	/* only the first 4 bytes count; the garbage after them is not read */
	ck_assert_int_eq(util_b64url_decode("Zm9v!!!", 4, out, sizeof out, &outlen), 0);
	ck_assert_uint_eq(outlen, 3);
	ck_assert_mem_eq(out, "foo", 3);
}
END_TEST

START_TEST(b64_decode_small_buffer)
{
	unsigned char out[8];
	size_t outlen = 0;
	ck_assert_int_eq(util_b64url_decode("Zm9vYg", 6, out, 3, &outlen), TOKEND_ENOMEM);
	ck_assert_int_eq(util_b64url_decode("Zm9v", 4, out, 2, &outlen), TOKEND_ENOMEM);
	ck_assert_int_eq(util_b64url_decode("Zm9v", 4, out, 0, &outlen), TOKEND_ENOMEM);
	ck_assert_int_eq(util_b64url_decode("Zm9v", 4, out, 3, &outlen), 0);
	ck_assert_uint_eq(outlen, 3);
}
END_TEST

START_TEST(b64_encode_small_buffer)
{
	char out[16];
	memset(out, 'x', sizeof out);
	/* "foo" needs 4 characters and the NUL */
	ck_assert_uint_eq(util_b64url_encode((const unsigned char *)"foo", 3, out, 4), 0);
	ck_assert_uint_eq(util_b64url_encode((const unsigned char *)"foo", 3, out, 0), 0);
	ck_assert_uint_eq(util_b64url_encode((const unsigned char *)"f", 1, out, 2), 0);
	ck_assert_uint_eq(util_b64url_encode((const unsigned char *)"foo", 3, out, 5), 4);
	ck_assert_str_eq(out, "Zm9v");
}
END_TEST

/* ---- UUIDs -------------------------------------------------------------- */

static void assert_canonical(const char *u)
{
	ck_assert_uint_eq(strlen(u), 36);
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			ck_assert_int_eq(u[i], '-');
		else
			ck_assert_msg(strchr("0123456789abcdef", u[i]) != NULL && u[i] != '\0',
				      "bad character in %s", u);
	}
	ck_assert_int_eq(u[14], '4'); /* version 4 */
	ck_assert_msg(strchr("89ab", u[19]) != NULL, "bad variant in %s", u);
}

START_TEST(uuid_new_valid_distinct)
{
	char a[UUID_STR_LEN], b[UUID_STR_LEN];

	ck_assert_int_eq(util_uuid_new(a), 0);
	ck_assert_int_eq(util_uuid_new(b), 0);
	assert_canonical(a);
	assert_canonical(b);
	ck_assert(util_uuid_valid(a));
	ck_assert(util_uuid_valid(b));
	ck_assert_str_ne(a, b);
	for (int i = 0; i < 200; i++) {
		ck_assert_int_eq(util_uuid_new(b), 0);
		ck_assert(util_uuid_valid(b));
		ck_assert_str_ne(a, b);
	}
}
END_TEST

START_TEST(uuid_valid_cases)
{
	ck_assert(util_uuid_valid("123e4567-e89b-42d3-a456-426614174000"));
	ck_assert(util_uuid_valid("00000000-0000-0000-0000-000000000000"));
	ck_assert(!util_uuid_valid("123E4567-E89B-42D3-A456-426614174000")); /* upper */
	ck_assert(!util_uuid_valid("123e4567-e89b-42d3-a456-42661417400A"));
	ck_assert(!util_uuid_valid("123e4567e89b42d3a456426614174000")); /* no dashes */
	ck_assert(!util_uuid_valid("123e4567-e89b-42d3-a456-426614174000x"));
	ck_assert(!util_uuid_valid("123e4567-e89b-42d3-a456-426614174000 "));
	ck_assert(!util_uuid_valid("123e4567-e89b-42d3-a456-426614174000\n"));
	ck_assert(!util_uuid_valid("123e4567-e89b-42d3-a456-42661417400"));  /* short */
	ck_assert(!util_uuid_valid("123e4567-e89b-42d3-a4564-26614174000")); /* dash moved */
	ck_assert(!util_uuid_valid("123e4567-e89b-42d3-a456-42661417400g"));
	ck_assert(!util_uuid_valid("{123e4567-e89b-42d3-a456-426614174000}"));
	ck_assert(!util_uuid_valid(""));
	ck_assert(!util_uuid_valid("-"));
}
END_TEST

/* ---- time --------------------------------------------------------------- */

START_TEST(time_rfc3339)
{
	char out[RFC3339_LEN];

	util_time_rfc3339(0, out);
	ck_assert_str_eq(out, "1970-01-01T00:00:00Z");
	util_time_rfc3339(1795830123, out);
	ck_assert_str_eq(out, "2026-11-28T01:42:03Z");
	util_time_rfc3339(951782400, out);
	ck_assert_str_eq(out, "2000-02-29T00:00:00Z");
	util_time_rfc3339(1234567890, out);
	ck_assert_str_eq(out, "2009-02-13T23:31:30Z");
	util_time_rfc3339(4102444799LL, out);
	ck_assert_str_eq(out, "2099-12-31T23:59:59Z");
}
END_TEST

START_TEST(time_now_mono)
{
	int64_t now = util_now();
	uint64_t a = util_mono_us(), b;

	ck_assert_int_gt(now, 1700000000);
	b = util_mono_us();
	ck_assert_uint_ge(b, a);
	ck_assert_int_ge(util_ncpus(), 1);
}
END_TEST

START_TEST(random_bytes)
{
	unsigned char a[32], b[32];
	ck_assert_int_eq(util_random(a, sizeof a), 0);
	ck_assert_int_eq(util_random(b, sizeof b), 0);
	ck_assert_int_ne(memcmp(a, b, sizeof a), 0);
	ck_assert_int_eq(util_random(a, 0), 0);
}
END_TEST

/* ---- UTF-8 -------------------------------------------------------------- */

#define U8(s) util_utf8_valid((s), sizeof(s) - 1)

START_TEST(utf8_accepts)
{
	ck_assert(U8(""));
	ck_assert(U8("hello, world"));
	ck_assert(U8("\xc3\xa9"));         /* é */
	ck_assert(U8("\xc2\x80"));         /* U+0080, smallest 2-byte */
	ck_assert(U8("\xdf\xbf"));         /* U+07FF */
	ck_assert(U8("\xe0\xa0\x80"));     /* U+0800 */
	ck_assert(U8("\xe2\x82\xac"));     /* € */
	ck_assert(U8("\xed\x9f\xbf"));     /* U+D7FF, just below surrogates */
	ck_assert(U8("\xee\x80\x80"));     /* U+E000, just above */
	ck_assert(U8("\xef\xbf\xbf"));     /* U+FFFF */
	ck_assert(U8("\xf0\x90\x80\x80")); /* U+10000 */
	ck_assert(U8("\xf0\x9f\x98\x80")); /* emoji */
	ck_assert(U8("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
	ck_assert(U8("a\xc3\xa9z\xe2\x82\xac!"));
	ck_assert(U8("a\0b")); /* NUL is well-formed UTF-8 */
}
END_TEST

START_TEST(utf8_rejects)
{
	ck_assert(!U8("\xc0\x80"));     /* overlong NUL */
	ck_assert(!U8("\xc1\xbf"));     /* overlong */
	ck_assert(!U8("\xe0\x80\x80")); /* overlong 3-byte */
	ck_assert(!U8("\xe0\x9f\xbf"));
	ck_assert(!U8("\xf0\x80\x80\x80")); /* overlong 4-byte */
	ck_assert(!U8("\xf0\x8f\xbf\xbf"));
	ck_assert(!U8("\xed\xa0\x80"));     /* U+D800 surrogate */
	ck_assert(!U8("\xed\xbf\xbf"));     /* U+DFFF */
	ck_assert(!U8("\xf4\x90\x80\x80")); /* > U+10FFFF */
	ck_assert(!U8("\xf5\x80\x80\x80"));
	ck_assert(!U8("\xf8\x88\x80\x80\x80")); /* 5-byte form */
	ck_assert(!U8("\xff"));
	ck_assert(!U8("\xfe"));
	ck_assert(!U8("\x80")); /* lone continuation */
	ck_assert(!U8("a\xbfz"));
	ck_assert(!U8("\xc3")); /* truncated */
	ck_assert(!U8("\xe2\x82"));
	ck_assert(!U8("\xf0\x9f\x98"));
	ck_assert(!U8("\xc3z")); /* bad continuation */
	ck_assert(!U8("\xe2\x82z"));
	ck_assert(!U8("ok\xf0\x9f\x98"));
}
END_TEST

START_TEST(utf8_respects_len)
{
	/* The invalid byte lies after len: not looked at. */
	ck_assert(util_utf8_valid("abc\xff", 3));
	/* A sequence cut by len is truncated. */
	ck_assert(!util_utf8_valid("\xe2\x82\xac", 2));
}
END_TEST

/* ---- err.h -------------------------------------------------------------- */

/* ---- per-thread objects ------------------------------------------------ */

static atomic_int tls_released;

static void tls_release(void *p)
{
	atomic_fetch_add(&tls_released, 1);
	free(p);
}

static struct util_tls tls_test = UTIL_TLS_INIT(64, tls_release);

static void *tls_thread(void *arg)
{
	unsigned char *p;

	(void)arg;
	if (util_tls_get(&tls_test) != NULL)
		return NULL; /* a new thread has none yet */
	p = util_tls_make(&tls_test);
	if (p == NULL || util_tls_get(&tls_test) != p || util_tls_make(&tls_test) != p)
		return NULL;
	for (size_t i = 0; i < 64; i++)
		if (p[i] != 0)
			return NULL;
	p[0] = 1; /* mark it: the main thread's object must not show this */
	return p;
}

/* Each thread its own zeroed object, released when the thread ends. */
START_TEST(tls_per_thread)
{
	pthread_t t[2];
	void *got[2];
	unsigned char *mine;

	atomic_store(&tls_released, 0);
	ck_assert_ptr_null(util_tls_get(&tls_test));
	mine = util_tls_make(&tls_test);
	ck_assert_ptr_nonnull(mine);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, tls_thread, NULL), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_join(t[i], &got[i]), 0);
		ck_assert_ptr_nonnull(got[i]);
		ck_assert_ptr_ne(got[i], mine);
	}
	ck_assert_int_eq(atomic_load(&tls_released), 2);
	ck_assert_ptr_eq(util_tls_get(&tls_test), mine);
	ck_assert_int_eq(mine[0], 0);
}
END_TEST

START_TEST(strerror_never_null)
{
	for (int e = 1; e >= -40; e--) {
		const char *s = tokend_strerror(e);
		ck_assert_ptr_nonnull(s);
	}
	ck_assert_str_ne(tokend_strerror(TOKEND_EINVAL), tokend_strerror(TOKEND_EIO));
	ck_assert_uint_gt(strlen(tokend_strerror(TOKEND_EBUSY)), 0);
}
END_TEST

START_TEST(dsn_redact_cases)
{
	static const char *const cases[][2] = {
		{"var/tokend.db", "var/tokend.db"},
		{"postgresql://tokend@/db?host=/tmp", "postgresql://tokend@/db?host=/tmp"},
		{"postgresql://tokend:s3cret@/db?host=/tmp",
		 "postgresql://tokend:***@/db?host=/tmp"},
		{"postgres://u:p@ss@h:5432/db", "postgres://u:***@h:5432/db"},
		{"postgresql://h/db?password=s3cret&sslmode=disable",
		 "postgresql://h/db?password=***&sslmode=disable"},
		{"postgresql://h/db?user=u&password=s3cret",
		 "postgresql://h/db?user=u&password=***"},
		{"postgresql://h/db?xpassword=1", "postgresql://h/db?xpassword=1"},
		{"host=/tmp password=s3cret dbname=db", "host=/tmp password=*** dbname=db"},
		{"password='s3 \\' cret' dbname=db", "password=*** dbname=db"},
		{"password='unterminated", "password=***"},
		{"host=h mypassword=1", "host=h mypassword=1"},
		{"postgresql://u:s3cret", "postgresql://u:s3cret"}, /* no '@': a host:port */
	};
	char out[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		util_dsn_redact(cases[i][0], out, sizeof(out));
		ck_assert_msg(strcmp(out, cases[i][1]) == 0, "%s: got %s", cases[i][0], out);
	}
	util_dsn_redact("postgresql://u:s3cret@h/db", out, 12);
	ck_assert_str_eq(out, "postgresql:");
	util_dsn_redact("password=s3cret", out, 5);
	ck_assert_str_eq(out, "pass");
}
END_TEST

/* ---- util_time_parse_rfc3339 -------------------------------------------- */

static const struct {
	const char *s;
	int64_t want;
} good_times[] = {
	{"2026-11-28T01:02:03Z", 1795827723},
	{"2026-11-28t01:02:03z", 1795827723},
	{"2026-11-28T01:02:03z", 1795827723},
	{"2026-11-28t01:02:03Z", 1795827723},
	{"2026-11-28T01:02:03.5Z", 1795827723},
	{"2026-11-28T01:02:03.999999999Z", 1795827723},
	{"2026-11-28T01:02:03.000Z", 1795827723},
	{"2026-11-28T01:02:03+00:00", 1795827723},
	{"2026-11-28T01:02:03-00:00", 1795827723},
	{"2026-11-28T03:02:03+02:00", 1795827723},
	{"2026-11-27T19:32:03-05:30", 1795827723},
	{"2026-11-28T03:02:03.25+02:00", 1795827723},
	{"1970-01-01T00:00:00Z", 0},
	{"2024-02-29T12:00:00Z", 1709208000},
	{"2000-03-01T00:00:00Z", 951868800},
	{"2026-12-31T23:59:59Z", 1798761599},
	/* an offset carrying the date over the year's end */
	{"2027-01-01T01:59:59+02:00", 1798761599},
};

static const char *const bad_times[] = {
	"",
	"garbage",
	"2026-11-28",
	"2026-11-28T01:02:03",   /* no zone */
	"2026-11-28T01:02:03.5", /* no zone */
	"2026-11-28T01:02Z",     /* no seconds */
	"2026-02-30T00:00:00Z",  /* no such day */
	"2027-02-29T00:00:00Z",  /* not a leap year */
	"2100-02-29T00:00:00Z",  /* not a leap year either */
	"2026-04-31T00:00:00Z",
	"2026-13-01T00:00:00Z",
	"2026-00-10T00:00:00Z",
	"2026-11-00T00:00:00Z",
	"2026-11-28T24:00:00Z", /* hour 24 */
	"2026-11-28T01:60:00Z",
	"2026-11-28T01:02:61Z",
	"2026-11-28T01:02:03Zx", /* trailing characters */
	"2026-11-28T01:02:03Z ",
	"2026-11-28T01:02:03+02:00x",
	"2026-11-28T01:02:03.Z", /* empty fraction */
	" 2026-11-28T01:02:03Z",
	"2026-11-28X01:02:03Z",
	"26-11-28T01:02:03Z",
	"2026-1-28T01:02:03Z",
	"2026-11-28T1:02:03Z",
	"2026-11-28T01:02:03+2:00",
	"2026-11-28T01:02:03+02",
	"2026-11-28T01:02:03+02:60",
	"2026/11/28T01:02:03Z",
	"+2026-11-28T01:02:03Z",
	"2026-11-28T01:02:03ZZ",
};

START_TEST(rfc3339_good)
{
	int64_t got = -12345;

	ck_assert_msg(util_time_parse_rfc3339(good_times[_i].s, &got) == 0, "refused %s",
		      good_times[_i].s);
	ck_assert_msg(got == good_times[_i].want, "%s: got %lld, want %lld", good_times[_i].s,
		      (long long)got, (long long)good_times[_i].want);
}
END_TEST

START_TEST(rfc3339_bad)
{
	int64_t got = 0;

	ck_assert_msg(util_time_parse_rfc3339(bad_times[_i], &got) == TOKEND_EINVAL,
		      "accepted \"%s\"", bad_times[_i]);
}
END_TEST

START_TEST(rfc3339_roundtrip)
{
	char buf[RFC3339_LEN];
	int64_t got = 0;
	int64_t samples[] = {0, 951868800, 1709208000, 1795827723, 1798761599, util_now()};

	for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
		util_time_rfc3339(samples[i], buf);
		ck_assert_int_eq(util_time_parse_rfc3339(buf, &got), 0);
		ck_assert_int_eq(got, samples[i]);
	}
}
END_TEST

static Suite *util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("b64url");

	tcase_add_test(tc, b64_vectors);
	tcase_add_test(tc, b64_roundtrip_all_lengths);
	tcase_add_test(tc, b64_decode_rejects);
	tcase_add_test(tc, b64_decode_embedded_nul_in_text);
	tcase_add_test(tc, b64_decode_respects_len);
	tcase_add_test(tc, b64_decode_small_buffer);
	tcase_add_test(tc, b64_encode_small_buffer);
	suite_add_tcase(s, tc);

	tc = tcase_create("uuid");
	tcase_add_test(tc, uuid_new_valid_distinct);
	tcase_add_test(tc, uuid_valid_cases);
	suite_add_tcase(s, tc);

	tc = tcase_create("time");
	tcase_add_test(tc, time_rfc3339);
	tcase_add_test(tc, time_now_mono);
	tcase_add_test(tc, random_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("rfc3339");
	tcase_add_loop_test(tc, rfc3339_good, 0, (int)(sizeof good_times / sizeof good_times[0]));
	tcase_add_loop_test(tc, rfc3339_bad, 0, (int)(sizeof bad_times / sizeof bad_times[0]));
	tcase_add_test(tc, rfc3339_roundtrip);
	suite_add_tcase(s, tc);

	tc = tcase_create("utf8");
	tcase_add_test(tc, utf8_accepts);
	tcase_add_test(tc, utf8_rejects);
	tcase_add_test(tc, utf8_respects_len);
	suite_add_tcase(s, tc);

	tc = tcase_create("err");
	tcase_add_test(tc, tls_per_thread);
	tcase_add_test(tc, strerror_never_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("dsn");
	tcase_add_test(tc, dsn_redact_cases);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(util_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
