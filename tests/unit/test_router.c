/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/router.h: the route table matches method
 * and path exactly as received (optional trailing slash, nothing decoded or
 * normalised), answers HEAD as GET, 405 with the allowed methods (HEAD
 * wherever GET), and 404 otherwise.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/handlers.h"
#include "tokend/router.h"

static const struct route *match(const char *method, const char *path, char *allow, size_t allowlen,
				 int *err)
{
	char params[HANDLER_MAX_PARAMS][HANDLER_PARAM_MAX];

	memset(params, 0, sizeof params);
	*err = 12345;
	return router_match(method, path, params, allow, allowlen, err);
}

static void assert_not_found(const char *method, const char *path)
{
	char allow[64] = "";
	int err = 0;

	ck_assert_msg(match(method, path, allow, sizeof allow, &err) == NULL, "%s %s matched",
		      method, path);
	ck_assert_msg(err == TOKEND_ENOTFOUND, "%s %s: err %d", method, path, err);
}

START_TEST(obtain_route)
{
	char allow[64] = "";
	int err = 0;
	const struct route *r;

	r = match("POST", "/api/auth/jwt/", allow, sizeof allow, &err);
	ck_assert_ptr_nonnull(r);
	ck_assert(r->fn == handler_jwt_obtain);
	ck_assert_uint_eq(r->ok_status, 201);
	ck_assert_str_eq(r->method, "POST");
	ck_assert(!r->auth);

	ck_assert_ptr_eq(match("POST", "/api/auth/jwt", allow, sizeof allow, &err), r);
}
END_TEST

START_TEST(wrong_method)
{
	char allow[64] = "";
	int err = 0;

	ck_assert_ptr_null(match("GET", "/api/auth/jwt/", allow, sizeof allow, &err));
	ck_assert_int_eq(err, TOKEND_EMETHOD);
	ck_assert_str_eq(allow, "POST");

	allow[0] = '\0';
	ck_assert_ptr_null(match("PUT", "/api/auth/jwt", allow, sizeof allow, &err));
	ck_assert_int_eq(err, TOKEND_EMETHOD);
	ck_assert_str_eq(allow, "POST");

	/* methods are case-sensitive (RFC 9110) */
	allow[0] = '\0';
	ck_assert_ptr_null(match("post", "/api/auth/jwt/", allow, sizeof allow, &err));
	ck_assert_int_eq(err, TOKEND_EMETHOD);
	ck_assert_str_eq(allow, "POST");
}
END_TEST

START_TEST(not_found)
{
	assert_not_found("POST", "/");
	assert_not_found("POST", "");
	assert_not_found("POST", "/nope");
	assert_not_found("POST", "/api/auth/jwt//");
	assert_not_found("POST", "//api/auth/jwt/");
	assert_not_found("POST", "/api//auth/jwt/");
	assert_not_found("POST", "/api/auth/jwt/%00");
	assert_not_found("POST", "/api/auth/jwt%2F");
	assert_not_found("POST", "/api/auth/%6Awt/");
	assert_not_found("POST", "/api/auth/../auth/jwt/");
	assert_not_found("POST", "/api/auth/./jwt/");
	assert_not_found("POST", "/api/auth/jwt/x");
	assert_not_found("POST", "/api/auth/jwtx");
	assert_not_found("POST", "/api/auth/jw");
	assert_not_found("POST", "/API/auth/jwt/");
	assert_not_found("POST", "api/auth/jwt/");
	assert_not_found("POST", "/api/auth/jwt/?x=1");
	assert_not_found("GET", "/nope");
}
END_TEST

START_TEST(head_is_get)
{
	char allow[64] = "";
	int err = 0;
	const struct route *r;

	r = match("HEAD", "/.well-known/jwks.json", allow, sizeof allow, &err);
	ck_assert_ptr_nonnull(r);
	ck_assert(r->fn == handler_jwks);
	r = match("HEAD", "/api/openapi/token/abc/", allow, sizeof allow, &err);
	ck_assert_ptr_nonnull(r);
	ck_assert(r->fn == handler_api_tokens_list);
	ck_assert_str_eq(r->method, "GET");

	ck_assert_ptr_null(match("POST", "/.well-known/jwks.json", allow, sizeof allow, &err));
	ck_assert_int_eq(err, TOKEND_EMETHOD);
	ck_assert_str_eq(allow, "GET, HEAD");
	ck_assert_ptr_null(match("PUT", "/api/openapi/token/abc/", allow, sizeof allow, &err));
	ck_assert_str_eq(allow, "GET, HEAD, POST");
	ck_assert_ptr_null(match("HEAD", "/api/auth/jwt/", allow, sizeof allow, &err));
	ck_assert_int_eq(err, TOKEND_EMETHOD);
	ck_assert_str_eq(allow, "POST");
	/* Methods are case-sensitive (RFC 9110 9.1). */
	ck_assert_ptr_null(match("head", "/.well-known/jwks.json", allow, sizeof allow, &err));
}
END_TEST

/* CORS preflights (src/http/server.c) are granted from what router_match
 * lists for OPTIONS: no route may have that method itself. */
START_TEST(options_lists_every_method)
{
	static const struct {
		const char *path, *allow;
	} cases[] = {
		{"/api/auth/jwt/", "POST"},
		{"/api/auth/jwt/refresh", "POST"},
		{"/api/auth/jwt/verify/", "POST"},
		{"/.well-known/jwks.json", "GET, HEAD"},
		{"/api/openapi/token/abc/", "GET, HEAD, POST"},
		{"/api/openapi/token/abc/delete/", "POST"},
	};
	char allow[64];
	int err = 0;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		allow[0] = '\0';
		ck_assert_ptr_null(match("OPTIONS", cases[i].path, allow, sizeof allow, &err));
		ck_assert_int_eq(err, TOKEND_EMETHOD);
		ck_assert_str_eq(allow, cases[i].allow);
	}
	assert_not_found("OPTIONS", "/nope");
}
END_TEST

START_TEST(long_path)
{
	size_t n = 100000;
	char *p = malloc(n + 1);

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (i % 2) ? 'a' : '/';
	p[n] = '\0';
	assert_not_found("POST", p);
	memcpy(p, "/api/auth/jwt/", 14);
	assert_not_found("POST", p);
	free(p);
}
END_TEST

/* Every entry of router_routes() is found by its own method and pattern. */
START_TEST(table)
{
	size_t n = 0;
	const struct route *r = router_routes(&n);

	ck_assert_uint_gt(n, 0); /* the count grows with the table */
	for (size_t i = 0; i < n; i++) {
		char path[128], allow[64];
		const char *cap = strchr(r[i].pattern, '{');
		int err = 0;
		if (cap != NULL)
			snprintf(path, sizeof path, "%.*sred%s", (int)(cap - r[i].pattern),
				 r[i].pattern, strchr(cap, '}') + 1);
		else
			snprintf(path, sizeof path, "%s", r[i].pattern);
		ck_assert_msg(match(r[i].method, path, allow, sizeof allow, &err) == &r[i], "%s %s",
			      r[i].method, path);
	}
}
END_TEST

static Suite *router_suite(void)
{
	Suite *s = suite_create("router");
	TCase *tc = tcase_create("match");

	tcase_add_test(tc, obtain_route);
	tcase_add_test(tc, wrong_method);
	tcase_add_test(tc, not_found);
	tcase_add_test(tc, head_is_get);
	tcase_add_test(tc, options_lists_every_method);
	tcase_add_test(tc, long_path);
	tcase_add_test(tc, table);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(router_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
