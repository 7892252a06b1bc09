/* SPDX-License-Identifier: MIT */
/*
 * This module implements Django-compatible password hashes,
 * "pbkdf2_sha256$<iterations>$<salt>$<base64(PBKDF2-HMAC-SHA256, 32 bytes)>",
 * with OpenSSL. Derived keys and copies of secrets are wiped after use and
 * hashes are compared in constant time.
 */
#include "tokend/password.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokend/err.h"
#include "tokend/util.h"

#define DK_LEN 32
#define DK_B64_LEN 44 /* base64 of 32 bytes, padded */
#define ALGO "pbkdf2_sha256"

static const char salt_alphabet[] =
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/* PBKDF2 iterations this thread has computed (password_iterations_spent). */
static _Thread_local unsigned long long iterations_spent;

unsigned long long password_iterations_spent(void)
{
	return iterations_spent;
}

static int derive_b64(const char *password, size_t len, const char *salt, size_t saltlen,
		      long iterations, char out[DK_B64_LEN + 1])
{
	unsigned char dk[DK_LEN];
	int rc = TOKEND_ECRYPTO;

	if (len > 0x7fffffff || saltlen > 0x7fffffff)
		return TOKEND_EINVAL;
	iterations_spent += (unsigned long long)iterations;
	if (PKCS5_PBKDF2_HMAC(password, (int)len, (const unsigned char *)salt, (int)saltlen,
			      (int)iterations, EVP_sha256(), DK_LEN, dk) != 1)
		goto out;
	if (EVP_EncodeBlock((unsigned char *)out, dk, DK_LEN) != DK_B64_LEN)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(dk, sizeof(dk));
	return rc;
}

int password_hash(const char *password, size_t len, long iterations, char *out, size_t outlen)
{
	char salt[PASSWORD_SALT_LEN + 1];
	unsigned char rnd[PASSWORD_SALT_LEN];
	char b64[DK_B64_LEN + 1];
	int rc;
	int n;

	if (iterations < 1 || iterations > PASSWORD_MAX_ITERATIONS)
		return TOKEND_EINVAL;
	rc = util_random(rnd, sizeof(rnd));
	if (rc != 0)
		return rc;
	/* 62 symbols: reject bytes >= 248 to keep the choice uniform. */
	for (size_t i = 0; i < PASSWORD_SALT_LEN; i++) {
		while (rnd[i] >= 248) {
			rc = util_random(&rnd[i], 1);
			if (rc != 0)
				return rc;
		}
		salt[i] = salt_alphabet[rnd[i] % 62];
	}
	salt[PASSWORD_SALT_LEN] = '\0';
	rc = derive_b64(password, len, salt, PASSWORD_SALT_LEN, iterations, b64);
	if (rc != 0)
		return rc;
	n = snprintf(out, outlen, ALGO "$%ld$%s$%s", iterations, salt, b64);
	if (n < 0 || (size_t)n >= outlen)
		return TOKEND_EINVAL;
	return 0;
}

bool password_parse(const char *encoded, long *iterations, const char **salt, size_t *saltlen,
		    const char **hash)
{
	const char *p;
	const char *d1;
	const char *d2;
	char *end;
	long n;

	if (encoded == NULL || strlen(encoded) > PASSWORD_HASH_MAX)
		return false;
	if (strncmp(encoded, ALGO "$", sizeof(ALGO)) != 0)
		return false;
	p = encoded + sizeof(ALGO);
	if (*p < '1' || *p > '9')
		return false;
	errno = 0;
	n = strtol(p, &end, 10);
	if (errno != 0 || *end != '$' || n < 1 || n > PASSWORD_MAX_ITERATIONS)
		return false;
	d1 = end + 1;
	d2 = strchr(d1, '$');
	if (d2 == NULL || d2 == d1)
		return false;
	if (strlen(d2 + 1) != DK_B64_LEN || strchr(d2 + 1, '$') != NULL)
		return false;
	*iterations = n;
	*salt = d1;
	*saltlen = (size_t)(d2 - d1);
	*hash = d2 + 1;
	return true;
}

bool password_verify(const char *password, size_t len, const char *encoded, long iterations,
		     bool *needs_rehash)
{
	long stored;
	const char *salt;
	const char *hash;
	size_t saltlen;
	char b64[DK_B64_LEN + 1];
	bool ok = false;

	if (needs_rehash != NULL)
		*needs_rehash = false;
	if (password_parse(encoded, &stored, &salt, &saltlen, &hash) &&
	    derive_b64(password, len, salt, saltlen, stored, b64) == 0)
		ok = CRYPTO_memcmp(b64, hash, DK_B64_LEN) == 0;
	OPENSSL_cleanse(b64, sizeof(b64));
	if (ok && needs_rehash != NULL)
		*needs_rehash = stored < iterations;
	/*
	 * A failure costs the configured count, whatever was stored: a user
	 * with a cheaper hash (a Django import at 260,000) or one that does
	 * not parse (Django's unusable "!...", another hasher) would otherwise
	 * answer sooner than an unknown user, which password_verify_dummy()
	 * makes cost iterations. A match is not padded: the caller re-hashes.
	 */
	if (!ok)
		password_harden_runtime(password, len, encoded, iterations);
	return ok;
}

void password_verify_dummy(const char *password, size_t len, long iterations)
{
	static const char salt[] = "tokendDummySaltForTime";
	char b64[DK_B64_LEN + 1];

	if (iterations < 1 || iterations > PASSWORD_MAX_ITERATIONS)
		iterations = PASSWORD_DEFAULT_ITERATIONS;
	(void)derive_b64(password, len, salt, sizeof(salt) - 1, iterations, b64);
	OPENSSL_cleanse(b64, sizeof(b64));
}

void password_harden_runtime(const char *password, size_t len, const char *encoded, long iterations)
{
	long stored;
	const char *salt;
	const char *hash;
	size_t saltlen;

	if (iterations < 1 || iterations > PASSWORD_MAX_ITERATIONS)
		iterations = PASSWORD_DEFAULT_ITERATIONS;
	/* As Django's harden_runtime(): the difference, on a dummy salt. */
	if (!password_parse(encoded, &stored, &salt, &saltlen, &hash))
		stored = 0;
	if (stored < iterations)
		password_verify_dummy(password, len, iterations - stored);
}
