/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/password.h: the Django-compatible
 * "pbkdf2_sha256$<iterations>$<salt>$<hash>" format, a fixed vector computed
 * with Python's hashlib, and the refusal of every malformed encoding.
 * Iteration counts stay small so that the suite runs fast under sanitizers.
 *
 * The "work" cases prove the timing contract by counting PBKDF2 iterations
 * (password_iterations_spent), not by wall clock: a failed check costs the
 * configured count whatever the stored hash is (cheaper, unparsable, none),
 * so a login's duration does not tell which usernames exist.
 */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/password.h"

#define PW(s) (s), (sizeof(s) - 1)

/*
 * /usr/bin/python3 -c "import hashlib,base64;print(base64.b64encode(
 *   hashlib.pbkdf2_hmac('sha256',b'pw',b'saltsaltsaltsaltsaltsa',1000)).decode())"
 */
#define DJANGO_PW \
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y="
/* the same for the 3-byte password "a\0b" */
#define DJANGO_NUL \
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$hW/HgJBtw17wDaUhSC4bo+JcRK2DrbOprmdOrCPkJnE="

static bool is_b64std(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '/' && s[i] != '=')
			return false;
	return true;
}

START_TEST(hash_format)
{
	char out[PASSWORD_HASH_MAX];
	const char *p, *salt, *hash;

	ck_assert_int_eq(password_hash(PW("secret"), 1000, out, sizeof out), 0);
	ck_assert_msg(strncmp(out, "pbkdf2_sha256$1000$", 19) == 0, "got %s", out);
	salt = out + 19;
	p = strchr(salt, '$');
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq((int)(p - salt), PASSWORD_SALT_LEN);
	for (const char *q = salt; q < p; q++)
		ck_assert_msg(isalnum((unsigned char)*q), "salt char %c in %s", *q, out);
	hash = p + 1;
	ck_assert_uint_eq(strlen(hash), 44);
	ck_assert(is_b64std(hash, 44));
	ck_assert_int_eq(hash[43], '=');
	ck_assert_ptr_null(strchr(hash, '$'));
}
END_TEST

START_TEST(hash_verify_roundtrip)
{
	char out[PASSWORD_HASH_MAX];
	bool rehash = true;

	ck_assert_int_eq(password_hash(PW("correct horse"), 1000, out, sizeof out), 0);
	ck_assert(password_verify(PW("correct horse"), out, 1000, &rehash));
	ck_assert(!rehash);
	ck_assert(password_verify(PW("correct horse"), out, 0, NULL));
	ck_assert(!password_verify(PW("correct horsf"), out, 1000, NULL));
	ck_assert(!password_verify(PW("correct hors"), out, 1000, NULL));
	ck_assert(!password_verify(PW("correct horse "), out, 1000, NULL));
	ck_assert(!password_verify(PW(""), out, 1000, NULL));
	ck_assert(!password_verify(PW("Correct horse"), out, 1000, NULL));
}
END_TEST

START_TEST(hash_empty_password)
{
	char out[PASSWORD_HASH_MAX];

	ck_assert_int_eq(password_hash(PW(""), 1000, out, sizeof out), 0);
	ck_assert(password_verify(PW(""), out, 1000, NULL));
	ck_assert(!password_verify(PW("x"), out, 1000, NULL));
}
END_TEST

START_TEST(needs_rehash)
{
	char out[PASSWORD_HASH_MAX];
	bool rehash = false;

	ck_assert_int_eq(password_hash(PW("pw1"), 1000, out, sizeof out), 0);
	ck_assert(password_verify(PW("pw1"), out, 1001, &rehash));
	ck_assert(rehash);
	rehash = false;
	ck_assert(password_verify(PW("pw1"), out, 600000, &rehash));
	ck_assert(rehash);
	rehash = true;
	ck_assert(password_verify(PW("pw1"), out, 1000, &rehash));
	ck_assert(!rehash);
	rehash = true;
	ck_assert(password_verify(PW("pw1"), out, 999, &rehash));
	ck_assert(!rehash);
	rehash = true;
	ck_assert(password_verify(PW("pw1"), out, 1, &rehash));
	ck_assert(!rehash);
}
END_TEST

START_TEST(salts_differ)
{
	char a[PASSWORD_HASH_MAX], b[PASSWORD_HASH_MAX];

	ck_assert_int_eq(password_hash(PW("same"), 1000, a, sizeof a), 0);
	ck_assert_int_eq(password_hash(PW("same"), 1000, b, sizeof b), 0);
	ck_assert_str_ne(a, b);
	ck_assert_int_ne(memcmp(a + 19, b + 19, PASSWORD_SALT_LEN), 0);
	ck_assert(password_verify(PW("same"), a, 1000, NULL));
	ck_assert(password_verify(PW("same"), b, 1000, NULL));
}
END_TEST

START_TEST(django_vector)
{
	bool rehash = true;

	ck_assert(password_verify(PW("pw"), DJANGO_PW, 1000, &rehash));
	ck_assert(!rehash);
	ck_assert(password_verify(PW("pw"), DJANGO_PW, 600000, &rehash));
	ck_assert(rehash);
	ck_assert(!password_verify(PW("pW"), DJANGO_PW, 1000, NULL));
	ck_assert(!password_verify(PW("pwx"), DJANGO_PW, 1000, NULL));
	ck_assert(!password_verify(PW("p"), DJANGO_PW, 1000, NULL));
	/* (HMAC pads short keys with zeros: "pw\0" matches "pw" in Django too) */
}
END_TEST

START_TEST(embedded_nul)
{
	char out[PASSWORD_HASH_MAX];

	/* a fixed vector: the NUL and the byte after it are hashed */
	ck_assert(password_verify("a\0b", 3, DJANGO_NUL, 1000, NULL));
	ck_assert(!password_verify("a", 1, DJANGO_NUL, 1000, NULL));
	ck_assert(!password_verify("a\0c", 3, DJANGO_NUL, 1000, NULL));

	ck_assert_int_eq(password_hash("a\0b", 3, 1000, out, sizeof out), 0);
	ck_assert(password_verify("a\0b", 3, out, 1000, NULL));
	ck_assert(!password_verify("a", 1, out, 1000, NULL));
	ck_assert(!password_verify("a\0c", 3, out, 1000, NULL));
}
END_TEST

START_TEST(hash_bad_arguments)
{
	char out[PASSWORD_HASH_MAX];

	ck_assert_int_eq(password_hash(PW("x"), 0, out, sizeof out), TOKEND_EINVAL);
	ck_assert_int_eq(password_hash(PW("x"), -1, out, sizeof out), TOKEND_EINVAL);
	ck_assert_int_eq(password_hash(PW("x"), PASSWORD_MAX_ITERATIONS + 1, out, sizeof out),
			 TOKEND_EINVAL);
	ck_assert_int_eq(password_hash(PW("x"), 1000, out, 10), TOKEND_EINVAL);
	/* 13 + 1 + 4 + 1 + 22 + 1 + 44 = 86 characters and the NUL */
	ck_assert_int_eq(password_hash(PW("x"), 1000, out, 86), TOKEND_EINVAL);
	ck_assert_int_eq(password_hash(PW("x"), 1000, out, 87), 0);
	ck_assert_uint_eq(strlen(out), 86);
}
END_TEST

static const char *const malformed[] = {
	"",
	"pbkdf2_sha256",
	"pbkdf2_sha256$",
	"pbkdf2_sha256$1000",
	"pbkdf2_sha256$1000$",
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa",
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$",
	/* wrong algorithm names */
	"pbkdf2_sha1$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"PBKDF2_SHA256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"pbkdf2_sha2566$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"argon2$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	/* bad iteration counts */
	"pbkdf2_sha256$0$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"pbkdf2_sha256$-1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"pbkdf2_sha256$abc$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"pbkdf2_sha256$1000x$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"pbkdf2_sha256$$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"pbkdf2_sha256$100000001$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"pbkdf2_sha256$99999999999999999999999$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"pbkdf2_sha256$1e3$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	/* bad base64 of the hash */
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$!!!!",
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y",
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5--Gmc6m6vqR9JKrz_VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=$",
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=$x",
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y= ",
	/* the right hash truncated (a prefix must not match) */
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9J",
	/* the right hash with another salt */
	"pbkdf2_sha256$1000$saltsaltsaltsaltsaltsb$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	/* another iteration count */
	"pbkdf2_sha256$1001$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
	"!pbkdf2_sha256$1000$saltsaltsaltsaltsaltsa$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
};

START_TEST(verify_malformed)
{
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
		bool rehash = false;
		ck_assert_msg(!password_verify(PW("pw"), malformed[i], 1000, &rehash),
			      "accepted %s", malformed[i]);
		ck_assert_msg(!rehash, "needs_rehash set for %s", malformed[i]);
	}
}
END_TEST

START_TEST(verify_overlong_encoding)
{
	/* longer than PASSWORD_HASH_MAX: refused, not overflowing anything */
	size_t n = PASSWORD_HASH_MAX * 4;
	char *enc = malloc(n + 1);
	int w;

	ck_assert_ptr_nonnull(enc);
	w = snprintf(enc, n + 1, "%s", DJANGO_PW);
	memset(enc + w, 'A', n - (size_t)w);
	enc[n] = '\0';
	ck_assert(!password_verify(PW("pw"), enc, 1000, NULL));
	free(enc);
}
END_TEST

START_TEST(verify_dummy)
{
	password_verify_dummy(PW("whatever"), 1000);
	password_verify_dummy(PW(""), 1000);
	password_verify_dummy("a\0b", 3, 1);
}
END_TEST

/* PBKDF2 iterations spent by this thread since the last work_begin(). */
static unsigned long long work_mark;

static void work_begin(void)
{
	work_mark = password_iterations_spent();
}

static unsigned long long work_done(void)
{
	return password_iterations_spent() - work_mark;
}

#define CONFIGURED 5000L

START_TEST(work_counter_counts)
{
	char out[PASSWORD_HASH_MAX];

	work_begin();
	ck_assert_int_eq(password_hash(PW("x"), 1234, out, sizeof out), 0);
	ck_assert_uint_eq(work_done(), 1234);
	work_begin();
	ck_assert(password_verify(PW("pw"), DJANGO_PW, 1000, NULL));
	ck_assert_uint_eq(work_done(), 1000);
}
END_TEST

START_TEST(work_failed_cheaper_hash_pays_the_difference)
{
	bool rehash = true;

	/* as Django's harden_runtime: a stored 1,000 owes 4,000 more on failure */
	work_begin();
	ck_assert(!password_verify(PW("wrong"), DJANGO_PW, CONFIGURED, &rehash));
	ck_assert(!rehash);
	ck_assert_uint_eq(work_done(), CONFIGURED);
	/* the right password is not padded: it re-hashes instead */
	work_begin();
	ck_assert(password_verify(PW("pw"), DJANGO_PW, CONFIGURED, &rehash));
	ck_assert(rehash);
	ck_assert_uint_eq(work_done(), 1000);
	/* at the configured count: nothing added */
	work_begin();
	ck_assert(!password_verify(PW("wrong"), DJANGO_PW, 1000, NULL));
	ck_assert_uint_eq(work_done(), 1000);
}
END_TEST

START_TEST(work_failed_stronger_hash_costs_its_own)
{
	char out[PASSWORD_HASH_MAX];

	ck_assert_int_eq(password_hash(PW("pw"), 8000, out, sizeof out), 0);
	work_begin();
	ck_assert(!password_verify(PW("wrong"), out, CONFIGURED, NULL));
	ck_assert_uint_eq(work_done(), 8000);
}
END_TEST

/* Stored values that are not our format: they cost a full dummy hash. */
static const char *const unusable[] = {
	NULL,
	"!",
	"!abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN", /* Django's set_unusable_password */
	"argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
	"pbkdf2_sha1$260000$saltsaltsaltsaltsaltsa$aGFzaGhhc2hoYXNoaGFzaA==",
};

START_TEST(work_unparsable_hash_costs_configured)
{
	for (size_t i = 0; i < sizeof unusable / sizeof unusable[0]; i++) {
		work_begin();
		ck_assert(!password_verify(PW("pw"), unusable[i], CONFIGURED, NULL));
		ck_assert_msg(work_done() == CONFIGURED, "%s: %llu iterations",
			      unusable[i] ? unusable[i] : "(null)", work_done());
	}
	/* every malformed entry above, too (those that parse are cheaper) */
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
		work_begin();
		ck_assert(!password_verify(PW("pw"), malformed[i], CONFIGURED, NULL));
		ck_assert_msg(work_done() == CONFIGURED, "%s: %llu iterations", malformed[i],
			      work_done());
	}
}
END_TEST

START_TEST(work_harden_runtime)
{
	char out[PASSWORD_HASH_MAX];

	work_begin();
	password_harden_runtime(PW("pw"), DJANGO_PW, CONFIGURED);
	ck_assert_uint_eq(work_done(), CONFIGURED - 1000);
	work_begin();
	password_harden_runtime(PW("pw"), DJANGO_PW, 1000);
	ck_assert_uint_eq(work_done(), 0);
	work_begin();
	password_harden_runtime(PW("pw"), DJANGO_PW, 999);
	ck_assert_uint_eq(work_done(), 0);
	ck_assert_int_eq(password_hash(PW("pw"), 8000, out, sizeof out), 0);
	work_begin();
	password_harden_runtime(PW("pw"), out, CONFIGURED);
	ck_assert_uint_eq(work_done(), 0);
	for (size_t i = 0; i < sizeof unusable / sizeof unusable[0]; i++) {
		work_begin();
		password_harden_runtime(PW("pw"), unusable[i], CONFIGURED);
		ck_assert_uint_eq(work_done(), CONFIGURED);
	}
	work_begin();
	password_verify_dummy(PW("pw"), CONFIGURED);
	ck_assert_uint_eq(work_done(), CONFIGURED);
}
END_TEST

/* password_parse() splits what password_verify() reads, and nothing else. */
START_TEST(parse_parts)
{
	static const char *const bad[] = {
		"pbkdf2_sha256$0100$s$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
		"pbkdf2_sha256$+100$s$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
		"pbkdf2_sha256$100000001$s$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
		"pbkdf2_sha256$100$$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
		"pbkdf2_sha256$100$s$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y",
		"pbkdf2_sha256$100$s$t$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
		"pbkdf2_sha1$100$s$Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=",
		"",
	};
	const char *salt = NULL, *hash = NULL;
	size_t saltlen = 0;
	long iter = 0;

	ck_assert(password_parse(DJANGO_PW, &iter, &salt, &saltlen, &hash));
	ck_assert_int_eq(iter, 1000);
	ck_assert_uint_eq(saltlen, 22);
	ck_assert(strncmp(salt, "saltsaltsaltsaltsaltsa$", 23) == 0);
	ck_assert_str_eq(hash, "Ky5++Gmc6m6vqR9JKrz/VeuXzXh64CMJ6d6nEpzLQ7Y=");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(!password_parse(bad[i], &iter, &salt, &saltlen, &hash), "%s", bad[i]);
	ck_assert(!password_parse(NULL, &iter, &salt, &saltlen, &hash));
}
END_TEST

static Suite *password_suite(void)
{
	Suite *s = suite_create("password");
	TCase *tc = tcase_create("hash");

	tcase_add_test(tc, hash_format);
	tcase_add_test(tc, hash_verify_roundtrip);
	tcase_add_test(tc, hash_empty_password);
	tcase_add_test(tc, needs_rehash);
	tcase_add_test(tc, salts_differ);
	tcase_add_test(tc, hash_bad_arguments);
	suite_add_tcase(s, tc);

	tc = tcase_create("verify");
	tcase_add_test(tc, django_vector);
	tcase_add_test(tc, embedded_nul);
	tcase_add_test(tc, verify_malformed);
	tcase_add_test(tc, verify_overlong_encoding);
	tcase_add_test(tc, verify_dummy);
	tcase_add_test(tc, parse_parts);
	suite_add_tcase(s, tc);

	tc = tcase_create("work");
	tcase_add_test(tc, work_counter_counts);
	tcase_add_test(tc, work_failed_cheaper_hash_pays_the_difference);
	tcase_add_test(tc, work_failed_stronger_hash_costs_its_own);
	tcase_add_test(tc, work_unparsable_hash_costs_configured);
	tcase_add_test(tc, work_harden_runtime);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(password_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
