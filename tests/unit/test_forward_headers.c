/* SPDX-License-Identifier: MIT */
/*
 * This suite tests the response headers a handler sets
 * (handler_header_add in include/tokend/handlers.h, sent by
 * src/http/response.c): a value that cannot be sent as it is (CR, LF, HTAB,
 * DEL, another control byte, a space at either end, empty, too long) is
 * refused whole, never escaped or cut; UTF-8 passes as its bytes; the list
 * is bounded; the headers go out with a successful answer only.
 */
#include <check.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "http/response.h"
#include "tokend/err.h"
#include "tokend/handlers.h"

START_TEST(values_checked)
{
	static const char *const bad[] = {
		"",     " lead", "trail ", "a\r\nX-Injected: 1", "a\nb", "a\rb",
		"a\tb", "a\x7f", "a\x01",  "\x1b[31m",
	};
	struct handler_result res;
	char longv[HANDLER_HEADER_VALUE_MAX + 1];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&res, 0, sizeof res);
		ck_assert_msg(!handler_header_add(&res, "X-A", bad[i]), "accepted %zu", i);
		ck_assert_uint_eq(res.n_headers, 0);
	}
	memset(&res, 0, sizeof res);
	ck_assert(handler_header_add(&res, "X-A", "j\xc3\xb6rg"));
	ck_assert(handler_header_add(&res, "X-B", "inner space ok"));
	ck_assert(handler_header_add(&res, "X-C", "!#$%&'*+-.^_`|~\"(),/:;<=>?@[\\]{}"));
	memset(longv, 'a', sizeof longv);
	longv[HANDLER_HEADER_VALUE_MAX] = '\0';
	ck_assert(!handler_header_add(&res, "X-D", longv)); /* 256 bytes: refused, not cut */
	longv[HANDLER_HEADER_VALUE_MAX - 1] = '\0';
	ck_assert(handler_header_add(&res, "X-D", longv)); /* 255 */
	ck_assert_uint_eq(strlen(res.headers[3].value), HANDLER_HEADER_VALUE_MAX - 1);
	ck_assert(!handler_header_add(&res, "X-E", "full")); /* HANDLER_HEADERS_MAX */
	ck_assert_uint_eq(res.n_headers, HANDLER_HEADERS_MAX);
	ck_assert_str_eq(res.headers[0].value, "j\xc3\xb6rg");
}
END_TEST

START_TEST(sent_with_success_only)
{
	struct response_meta meta = {.method = "GET"};
	struct handler_result res;
	struct MHD_Response *r;
	unsigned status;
	size_t bytes;

	memset(&res, 0, sizeof res);
	ck_assert(handler_header_add(&res, "X-Auth-User-Id", "u1"));
	r = response_build(TOKEND_OK, 200, &res, &meta, &status, &bytes);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(status, 200);
	ck_assert_str_eq(MHD_get_response_header(r, "X-Auth-User-Id"), "u1");
	MHD_destroy_response(r);

	memset(&res, 0, sizeof res);
	ck_assert(handler_header_add(&res, "X-Auth-User-Id", "u1"));
	r = response_build(TOKEND_EAUTH, 200, &res, &meta, &status, &bytes);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(status, 401);
	ck_assert_ptr_null(MHD_get_response_header(r, "X-Auth-User-Id"));
	MHD_destroy_response(r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("forward_headers");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, values_checked);
	tcase_add_test(tc, sent_with_success_only);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
