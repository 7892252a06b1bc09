/* SPDX-License-Identifier: MIT */
/*
 * This suite tests handler_bearer_parse() (include/tokend/handlers.h), the
 * reading of the Authorization header that handler_authenticated() answers
 * with API.md's 401 bodies: missing, malformed, or one Bearer token.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/handlers.h"

START_TEST(bearer)
{
	static const char *const malformed[] = {
		"Bearer",      "Bearer ",    "bearer abc",  "BEARER abc",
		"Bearer  abc", "Bearer a b", "Bearer\tabc", "Basic dXNlcjpwYXNz",
		" Bearer abc", "Bearerabc",  "Bearer abc ",
	};
	const char *tok = NULL;
	size_t len = 0;

	ck_assert_int_eq(handler_bearer_parse(NULL, &tok, &len), BEARER_MISSING);
	ck_assert_int_eq(handler_bearer_parse("", &tok, &len), BEARER_MISSING);
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
		ck_assert_msg(handler_bearer_parse(malformed[i], &tok, &len) == BEARER_MALFORMED,
			      "\"%s\"", malformed[i]);
	ck_assert_int_eq(handler_bearer_parse("Bearer a.b.c", &tok, &len), BEARER_OK);
	ck_assert_uint_eq(len, 5);
	ck_assert(strncmp(tok, "a.b.c", len) == 0);
	ck_assert_int_eq(handler_bearer_parse("Bearer x\t", &tok, &len), BEARER_OK);
	/* Only a space separates (simplejwt splits at any whitespace): the tab
	 * stays in the token, which then fails its check. */
	ck_assert_uint_eq(len, 2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("bearer");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, bearer);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
