/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of password hashing: Django-compatible
 * "pbkdf2_sha256$<iterations>$<salt>$<base64 hash>" strings computed with
 * OpenSSL's PBKDF2-HMAC-SHA256. These calls are slow on purpose (about
 * 110 ms at 600,000 iterations): never call them on an HTTP thread.
 */
#ifndef TOKEND_PASSWORD_H
#define TOKEND_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_DEFAULT_ITERATIONS 600000L
#define PASSWORD_MAX_ITERATIONS 100000000L /* refuse absurd imported counts */
#define PASSWORD_HASH_MAX 256              /* longest encoded hash accepted */
#define PASSWORD_SALT_LEN 22               /* as Django's get_random_string(22) */

/*
 * Hashes password (len bytes) with a fresh 22-character salt from the CSPRNG
 * into out. Returns 0, TOKEND_EINVAL (bad iterations or outlen too small) or
 * TOKEND_ECRYPTO.
 */
int password_hash(const char *password, size_t len, long iterations, char *out, size_t outlen);

/*
 * Checks password against an encoded hash in constant time. Returns true on
 * a match. A malformed or unsupported encoded hash (NULL, Django's unusable
 * "!...", another hasher's "argon2$...") never matches.
 *
 * iterations is the configured count. A failed check always costs at least
 * that many PBKDF2 iterations, as much as password_verify_dummy() at
 * iterations, so that wrong username and wrong password take the same time:
 * a hash stored with fewer iterations is checked and the difference spent
 * (password_harden_runtime); one that does not parse costs the whole count.
 * A hash stored with more iterations costs its own count. A match costs the
 * stored count only; when needs_rehash is not NULL it is set to true if the
 * hash matched but was made with fewer than iterations (the caller re-hashes,
 * which costs more than the padding would).
 */
bool password_verify(const char *password, size_t len, const char *encoded, long iterations,
		     bool *needs_rehash);

/*
 * Splits a stored hash "pbkdf2_sha256$<iterations>$<salt>$<44 characters>"
 * (at most PASSWORD_HASH_MAX bytes; iterations 1 to PASSWORD_MAX_ITERATIONS
 * without a sign or leading zero; a non-empty salt; no '$' after the salt)
 * as password_verify() reads it. Returns false for anything else. On true,
 * *salt (*saltlen bytes) and *hash (NUL-terminated) point into encoded.
 */
bool password_parse(const char *encoded, long *iterations, const char **salt, size_t *saltlen,
		    const char **hash);

/*
 * Spends the same work as a password_verify() at iterations, and always
 * fails: used for unknown users so timing does not reveal which exist.
 * iterations out of range means PASSWORD_DEFAULT_ITERATIONS.
 */
void password_verify_dummy(const char *password, size_t len, long iterations);

/*
 * Spends what a check against encoded costs less than one at iterations:
 * iterations minus the stored count (nothing when the stored count is
 * higher), or all of iterations when encoded does not parse. As Django's
 * BasePasswordHasher.harden_runtime(). password_verify() calls it on every
 * failure; call it yourself when a correct password is refused anyway (an
 * inactive user), so that this refusal costs what the others do.
 * iterations out of range counts as PASSWORD_DEFAULT_ITERATIONS.
 */
void password_harden_runtime(const char *password, size_t len, const char *encoded,
			     long iterations);

/*
 * The PBKDF2 iterations this thread has computed so far, in every call
 * above: the measure of work that tests compare instead of wall clock.
 */
unsigned long long password_iterations_spent(void);

#endif
