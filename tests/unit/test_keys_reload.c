/* SPDX-License-Identifier: MIT */
/*
 * This suite tests the reload of a running server's keys (issue 13,
 * src/crypto/keys_reload.c and the directory fingerprint of keys.c). It
 * proves that:
 *  - the unknown-kid gate lets exactly one caller through per gap, from
 *    one thread or from eight racing for it, and opens again after the gap;
 *  - keys_diff names the keys added and retired and a change of signer;
 *  - the fingerprint is stable for an unchanged directory, ignores files
 *    that are not keys, and changes with a key added, a chmod, a new
 *    "current"; an unopenable or unsafe directory has a stable fingerprint
 *    of its own;
 *  - a reload that fails keeps the old set; a "current" naming a key the
 *    directory lacks keeps the old signer;
 *  - with reload_on_unknown, jwtsign_check() accepts a token of a key added
 *    to the directory after the load, and without it refuses it;
 *  - jwtsign_key_add publishes without signing; jwtsign_key_use switches.
 */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/keys.h"
#include "tokend/err.h"
#include "tokend/jwtsign.h"
#include "unit.h"

static char base[64];
static char tmpdir[128];
static char keydir[192];

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(keydir, sizeof keydir, "%s/keys", tmpdir);
}

static void teardown(void)
{
	chmod(keydir, 0700);
	rm_rf(tmpdir);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
	char p[320];
	FILE *f;

	snprintf(p, sizeof p, "%s/%s", keydir, name);
	f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(p, mode), 0);
}

static struct jwtsign_keys *load(void)
{
	struct jwtsign_keys *ks = NULL;
	char err[512];

	ck_assert_msg(jwtsign_keys_load(keydir, "HS256", 1, &ks, err, sizeof err) == 0, "%s", err);
	return ks;
}

/* ---------------------------------------------------------------- the gate */

START_TEST(gate_one_per_gap)
{
	atomic_llong next = 0;

	ck_assert(keys_gate_pass(&next, 5000, 1000));
	ck_assert(!keys_gate_pass(&next, 5000, 1000));
	ck_assert(!keys_gate_pass(&next, 5999, 1000));
	ck_assert(keys_gate_pass(&next, 6000, 1000));
	ck_assert(!keys_gate_pass(&next, 6500, 1000));
	ck_assert(keys_gate_pass(&next, 60000, 1000)); /* a long quiet: open at once */
	ck_assert(!keys_gate_pass(&next, 60001, 1000));
}
END_TEST

static atomic_llong race_next;
static atomic_int race_passed;

static void *racer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20000; i++)
		if (keys_gate_pass(&race_next, 7000, 1000))
			atomic_fetch_add(&race_passed, 1);
	return NULL;
}

START_TEST(gate_one_winner_among_threads)
{
	pthread_t t[8];

	atomic_store(&race_next, 0);
	atomic_store(&race_passed, 0);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, racer, NULL), 0);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(atomic_load(&race_passed), 1);
}
END_TEST

/* ---------------------------------------------------------------- diff */

static void set_of(struct keyset *s, const char *const *kids, size_t n, size_t current)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < n; i++)
		snprintf(s->keys[i].kid, sizeof(s->keys[i].kid), "%s", kids[i]);
	s->count = n;
	s->current = current;
}

START_TEST(diff_names_changes)
{
	static const char *const a[] = {"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"};
	static const char *const b[] = {"bbbbbbbbbbbbbbbb", "cccccccccccccccc"};
	struct keyset *o = calloc(1, sizeof(*o)), *n = calloc(1, sizeof(*n));
	char out[512];

	set_of(o, a, 2, 0);
	set_of(n, a, 2, 0);
	ck_assert_str_eq(keys_diff(o, n, out, sizeof out), "no key changed");
	set_of(n, b, 2, 0);
	ck_assert_str_eq(keys_diff(o, n, out, sizeof out),
			 "added cccccccccccccccc; retired aaaaaaaaaaaaaaaa; signing "
			 "aaaaaaaaaaaaaaaa -> bbbbbbbbbbbbbbbb");
	set_of(n, a, 2, 1);
	ck_assert_str_eq(keys_diff(o, n, out, sizeof out),
			 "signing aaaaaaaaaaaaaaaa -> bbbbbbbbbbbbbbbb");
	set_of(n, b, 2, 0);
	set_of(o, b, 1, 0);
	ck_assert_str_eq(keys_diff(o, n, out, sizeof out), "added cccccccccccccccc");
	free(o);
	free(n);
}
END_TEST

/* ---------------------------------------------------------------- fingerprint */

START_TEST(fingerprint_tracks_what_a_reload_reads)
{
	struct jwtsign_keys *ks = load();
	char kid[JWTSIGN_KID_LEN + 1], gone[256], err[512];
	uint64_t f0 = keys_dir_fingerprint(keydir), f1, f2, f3, e1;

	ck_assert(f0 == keys_dir_fingerprint(keydir));
	write_file("notes.txt", "not a key\n", 0644);
	write_file(".x.HS256.key.tmp", "partial", 0600);
	ck_assert_msg(f0 == keys_dir_fingerprint(keydir), "files that are not keys are ignored");
	ck_assert_int_eq(jwtsign_key_add(keydir, "HS256", kid, err, sizeof err), 0);
	f1 = keys_dir_fingerprint(keydir);
	ck_assert(f1 != f0);
	ck_assert_int_eq(jwtsign_key_use(keydir, kid, err, sizeof err), 0);
	f2 = keys_dir_fingerprint(keydir);
	ck_assert_msg(f2 != f1, "a new \"current\" is a change");
	snprintf(gone, sizeof gone, "%s/%s.HS256.key", keydir, kid);
	ck_assert_int_eq(chmod(gone, 0640), 0);
	f3 = keys_dir_fingerprint(keydir);
	ck_assert_msg(f3 != f2, "a chmod is a change");
	ck_assert_int_eq(chmod(keydir, 0777), 0);
	e1 = keys_dir_fingerprint(keydir);
	ck_assert(e1 != f3 && e1 == keys_dir_fingerprint(keydir));
	ck_assert_int_eq(chmod(keydir, 0700), 0);
	ck_assert(keys_dir_fingerprint(keydir) == f3);
	snprintf(gone, sizeof gone, "%s/gone", tmpdir);
	ck_assert_int_eq(rename(keydir, gone), 0);
	e1 = keys_dir_fingerprint(keydir);
	ck_assert(e1 != f3 && e1 == keys_dir_fingerprint(keydir));
	ck_assert_int_eq(rename(gone, keydir), 0);
	ck_assert(keys_dir_fingerprint(keydir) == f3);
	jwtsign_keys_free(&ks);
}
END_TEST

/* ---------------------------------------------------------------- reloads */

START_TEST(failed_reload_keeps_old_set)
{
	struct jwtsign_keys *ks = load();
	char k1[JWTSIGN_KID_LEN + 1], k2[JWTSIGN_KID_LEN + 1];
	struct jwtsign_key_info info[4];

	jwtsign_signing_kid(ks, k1);
	write_file("0123456789abcdef.HS256.key", "c2hvcnQ\n", 0600); /* half written */
	ck_assert_int_eq(jwtsign_keys_refresh(ks, JWTSIGN_RELOAD_POLL), TOKEND_EINVAL);
	ck_assert_int_eq(jwtsign_keys_refresh(ks, JWTSIGN_RELOAD_POLL), 0); /* tried already */
	ck_assert_uint_eq(jwtsign_keys_list(ks, info, 4), 1);
	jwtsign_signing_kid(ks, k2);
	ck_assert_str_eq(k1, k2);
	jwtsign_keys_free(&ks);
}
END_TEST

START_TEST(current_naming_missing_key_keeps_signer)
{
	struct jwtsign_keys *ks = load();
	char k1[JWTSIGN_KID_LEN + 1], k2[JWTSIGN_KID_LEN + 1], now[JWTSIGN_KID_LEN + 1];
	char err[512];

	jwtsign_signing_kid(ks, k1);
	/* a newer key, and "current" naming one that is not there */
	ck_assert_int_eq(jwtsign_key_add(keydir, "HS256", k2, err, sizeof err), 0);
	write_file("current", "0123456789abcdef\n", 0600);
	ck_assert_int_eq(jwtsign_keys_refresh(ks, JWTSIGN_RELOAD_POLL), 1);
	jwtsign_signing_kid(ks, now);
	ck_assert_str_eq(now, k1);
	ck_assert_uint_eq(jwtsign_keys_list(ks, (struct jwtsign_key_info[4]){0}, 4), 2);
	ck_assert_int_eq(jwtsign_key_use(keydir, k2, err, sizeof err), 0);
	ck_assert_int_eq(jwtsign_keys_refresh(ks, JWTSIGN_RELOAD_POLL), 1);
	jwtsign_signing_kid(ks, now);
	ck_assert_str_eq(now, k2);
	ck_assert_int_eq(jwtsign_keys_refresh(ks, JWTSIGN_RELOAD_POLL), 0); /* unchanged */
	jwtsign_keys_free(&ks);
}
END_TEST

static char *mint_with(struct jwtsign_keys *ks, const char *kid)
{
	struct jwtsign_claims c = {.token_type = "access",
				   .jti = "0b6f3b3e-8a9a-4e0a-9a56-0b2b8c1e9d11",
				   .user_id = "7f1c2a64-1b7e-4f0e-8d6b-2d0c3a9e5f22",
				   .iat = 1000,
				   .exp = 2000,
				   .kid = kid};
	char *tok = NULL;

	ck_assert_int_eq(jwtsign_mint(ks, &c, &tok), 0);
	return tok;
}

START_TEST(unknown_kid_reloads_once)
{
	struct jwtsign_keys *ks = load();
	struct jwtsign_keys *other;
	struct jwtsign_policy pol = {.now = 1500};
	struct jwtsign_token t;
	char k2[JWTSIGN_KID_LEN + 1], err[512];
	char *tok;

	ck_assert_int_eq(jwtsign_key_add(keydir, "HS256", k2, err, sizeof err), 0);
	other = load();
	tok = mint_with(other, k2);
	/* off (the default): refused, and the set is not re-read */
	ck_assert_int_eq(jwtsign_check(ks, tok, strlen(tok), &pol, &t, NULL), TOKEND_EAUTH);
	ck_assert_uint_eq(jwtsign_keys_generation(ks), 0);
	jwtsign_keys_reload_on_unknown(ks, true);
	ck_assert_int_eq(jwtsign_check(ks, tok, strlen(tok), &pol, &t, NULL), 0);
	ck_assert_str_eq(t.kid, k2);
	ck_assert_uint_eq(jwtsign_keys_generation(ks), 1);
	/* the signing key did not change: k2 was added, not made current */
	jwtsign_signing_kid(ks, err);
	ck_assert_str_ne(err, k2);
	free(tok);
	jwtsign_keys_free(&other);
	jwtsign_keys_free(&ks);
}
END_TEST

START_TEST(add_on_empty_dir_signs)
{
	char k[JWTSIGN_KID_LEN + 1], err[512];
	struct jwtsign_keys *ks;

	ck_assert_int_eq(jwtsign_key_add(keydir, "ES256", k, err, sizeof err), 0);
	ks = load();
	jwtsign_signing_kid(ks, err);
	ck_assert_str_eq(err, k);
	ck_assert_int_eq(jwtsign_key_use(keydir, "0123456789abcdef", err, sizeof err),
			 TOKEND_ENOTFOUND);
	ck_assert_int_eq(jwtsign_key_use(keydir, "../current", err, sizeof err), TOKEND_ENOTFOUND);
	jwtsign_keys_free(&ks);
}
END_TEST

static Suite *keys_reload_suite(void)
{
	Suite *s = suite_create("keys_reload");
	TCase *tc = tcase_create("pure");

	tcase_add_test(tc, gate_one_per_gap);
	tcase_add_test(tc, gate_one_winner_among_threads);
	tcase_add_test(tc, diff_names_changes);
	suite_add_tcase(s, tc);
	tc = tcase_create("directory");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fingerprint_tracks_what_a_reload_reads);
	tcase_add_test(tc, failed_reload_keeps_old_set);
	tcase_add_test(tc, current_naming_missing_key_keeps_signer);
	tcase_add_test(tc, unknown_kid_reloads_once);
	tcase_add_test(tc, add_on_empty_dir_signs);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return UNIT_MAIN(keys_reload_suite(), "keys-reload", base, NULL);
}
