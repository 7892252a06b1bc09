/* SPDX-License-Identifier: MIT */
/*
 * This header gathers the small helpers every module uses: base64url,
 * CSPRNG bytes, UUIDs, RFC 3339 times and per-thread objects.
 */
#ifndef TOKEND_UTIL_H
#define TOKEND_UTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define UUID_STR_LEN 37 /* 36 characters and the NUL */
#define RFC3339_LEN 21  /* "2026-11-28T01:02:03Z" and the NUL */

/*
 * Encodes len bytes of in as unpadded base64url into out (outlen must be at
 * least 4 * ceil(len / 3) + 1). Returns the encoded length, or 0 if out is
 * too small.
 */
size_t util_b64url_encode(const unsigned char *in, size_t len, char *out, size_t outlen);

/*
 * Decodes unpadded base64url text (strict: no padding, no other alphabet,
 * no non-zero trailing bits). Returns the decoded length in *outlen, or
 * TOKEND_EINVAL for bad input and TOKEND_ENOMEM if out is too small.
 */
int util_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap,
		       size_t *outlen);

/* Fills buf with len bytes from the OS CSPRNG. Returns 0 or TOKEND_ECRYPTO. */
int util_random(void *buf, size_t len);

/* Writes a new random (v4) lowercase UUID into out. Returns 0 or an error. */
int util_uuid_new(char out[UUID_STR_LEN]);

/* True when s is a lowercase canonical 8-4-4-4-12 UUID. */
bool util_uuid_valid(const char *s);

/* Formats t (UTC) as RFC 3339 with Z into out. */
void util_time_rfc3339(int64_t t, char out[RFC3339_LEN]);

/*
 * Parses an RFC 3339 date-time ("2026-11-28T01:02:03Z", optional fraction,
 * "Z" or a +hh:mm / -hh:mm offset) into seconds since the epoch (UTC; the
 * fraction is dropped). Returns 0 or TOKEND_EINVAL.
 */
int util_time_parse_rfc3339(const char *s, int64_t *out);

/* Seconds since the epoch. */
int64_t util_now(void);

/* Monotonic microseconds, for durations. */
uint64_t util_mono_us(void);

/* True when the len bytes of s are well-formed UTF-8 (no overlongs or surrogates). */
bool util_utf8_valid(const char *s, size_t len);

/*
 * A growing byte buffer for building response text without a JSON tree.
 * Appends never fail loudly: the first allocation failure sets failed and
 * later appends do nothing. p is malloc'd (free it, or hand it on).
 */
struct util_buf {
	char *p;
	size_t len, cap;
	bool failed;
};

/* Appends n bytes of s. */
void util_buf_add(struct util_buf *b, const char *s, size_t n);

/* Appends a NUL-terminated string. */
void util_buf_puts(struct util_buf *b, const char *s);

/* Appends s as a JSON string literal (quoted, escaped); "null" for NULL. */
void util_buf_json_string(struct util_buf *b, const char *s);

/*
 * Copies a database setting (a SQLite path, a postgresql:// URL or a libpq
 * conninfo) into out with any password replaced by "***": the URL's
 * user:password@ and a password= parameter or conninfo keyword. For log
 * lines and printed settings, which must never carry the password.
 * Truncates to outlen - 1 bytes.
 */
void util_dsn_redact(const char *dsn, char *out, size_t outlen);

/* Number of online CPUs, at least 1. */
long util_ncpus(void);

/*
 * A per-thread object: each thread that asks gets its own zeroed block of
 * size bytes, made on first use and handed to release (which frees it)
 * when the thread ends. Declare one statically with UTIL_TLS_INIT.
 */
struct util_tls {
	pthread_mutex_t lock; /* guards the key's creation */
	atomic_int state;     /* 0: no key yet, 1: key made, -1: failed */
	pthread_key_t key;
	size_t size;
	void (*release)(void *);
};
#define UTIL_TLS_INIT(size_, release_)                               \
	{                                                            \
		PTHREAD_MUTEX_INITIALIZER, 0, 0, (size_), (release_) \
	}

/* This thread's object, or NULL if it has none yet (or no key can be made). */
void *util_tls_get(struct util_tls *t);

/* This thread's object, made (zeroed) if it has none; NULL on failure. */
void *util_tls_make(struct util_tls *t);

#endif
