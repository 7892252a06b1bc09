/* SPDX-License-Identifier: MIT */
/*
 * Interoperability of our JWT code with libjwt, an independent
 * implementation: tokens we mint decode with libjwt given the key, and
 * tokens libjwt mints with our key, kid and claims pass jwtsign_check.
 * (The service itself does not use libjwt: see src/crypto/jwtsign.c.)
 */
#include <check.h>
#include <jansson.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokend/jwtsign.h"
#include "tokend/util.h"

static char dir[64];
static struct jwtsign_keys *keys;
static unsigned char secret[64];
static size_t secret_len;

static void setup(void)
{
	char err[256], path[128], text[256], kid[JWTSIGN_KID_LEN + 1];
	FILE *f;
	size_t n;

	snprintf(dir, sizeof(dir), "/tmp/tokend-unit-libjwt-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	strcat(dir, "/k");
	ck_assert_int_eq(jwtsign_keys_load(dir, "HS256", 1, &keys, err, sizeof(err)), 0);
	jwtsign_signing_kid(keys, kid);
	snprintf(path, sizeof(path), "%s/%s.HS256.key", dir, kid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	while (n > 0 && text[n - 1] == '\n')
		n--;
	ck_assert_int_eq(util_b64url_decode(text, n, secret, sizeof(secret), &secret_len), 0);
}

static void teardown(void)
{
	char cmd[128];

	jwtsign_keys_free(&keys);
	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strlen(dir) - 2), dir);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(ours_decode_with_libjwt)
{
	char jti[UUID_STR_LEN], user[UUID_STR_LEN], team[UUID_STR_LEN];
	struct jwtsign_claims c = {.token_type = "api",
				   .jti = jti,
				   .user_id = user,
				   .team_uuid = team,
				   .iat = util_now(),
				   .exp = util_now() + 60};
	char *tok = NULL;
	jwt_t *j = NULL;

	util_uuid_new(jti);
	util_uuid_new(user);
	util_uuid_new(team);
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	ck_assert_int_eq(jwt_decode(&j, tok, secret, (int)secret_len), 0);
	ck_assert_int_eq(jwt_get_alg(j), JWT_ALG_HS256);
	ck_assert_str_eq(jwt_get_grant(j, "jti"), jti);
	ck_assert_str_eq(jwt_get_grant(j, "team_uuid"), team);
	ck_assert_str_eq(jwt_get_grant(j, "token_type"), "api");
	ck_assert_int_eq(jwt_get_grant_int(j, "exp"), c.exp);
	jwt_free(j);
	/* A flipped signature byte fails libjwt too. */
	tok[strlen(tok) - 2] = tok[strlen(tok) - 2] == 'A' ? 'B' : 'A';
	j = NULL;
	ck_assert_int_ne(jwt_decode(&j, tok, secret, (int)secret_len), 0);
	jwt_free(j);
	free(tok);
}
END_TEST

START_TEST(libjwt_tokens_pass_our_check)
{
	char jti[UUID_STR_LEN], user[UUID_STR_LEN], kid[JWTSIGN_KID_LEN + 1];
	char claims[256];
	struct jwtsign_policy pol = {.now = util_now()};
	struct jwtsign_token t;
	jwt_t *j = NULL;
	char *tok;

	util_uuid_new(jti);
	util_uuid_new(user);
	jwtsign_signing_kid(keys, kid);
	snprintf(claims, sizeof(claims),
		 "{\"token_type\":\"access\",\"jti\":\"%s\",\"user_id\":\"%s\",\"iat\":%lld,"
		 "\"exp\":%lld}",
		 jti, user, (long long)pol.now, (long long)pol.now + 300);
	ck_assert_int_eq(jwt_new(&j), 0);
	ck_assert_int_eq(jwt_set_alg(j, JWT_ALG_HS256, secret, (int)secret_len), 0);
	ck_assert_int_eq(jwt_add_header(j, "kid", kid), 0);
	ck_assert_int_eq(jwt_add_grants_json(j, claims), 0);
	tok = jwt_encode_str(j);
	ck_assert_ptr_nonnull(tok);
	ck_assert_int_eq(jwtsign_check(keys, tok, strlen(tok), &pol, &t, NULL), 0);
	ck_assert_str_eq(t.jti, jti);
	ck_assert_str_eq(t.token_type, "access");
	free(tok);
	/* libjwt's "none" (no key) is refused by us whatever it claims. */
	ck_assert_int_eq(jwt_set_alg(j, JWT_ALG_NONE, NULL, 0), 0);
	tok = jwt_encode_str(j);
	ck_assert_ptr_nonnull(tok);
	ck_assert_int_ne(jwtsign_check(keys, tok, strlen(tok), &pol, &t, NULL), 0);
	free(tok);
	jwt_free(j);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("libjwt_interop");
	TCase *tc = tcase_create("interop");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, ours_decode_with_libjwt);
	tcase_add_test(tc, libjwt_tokens_pass_our_check);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
