/* SPDX-License-Identifier: MIT */
/*
 * This module implements the small shared helpers of util.h: strict
 * base64url, CSPRNG bytes, UUIDs, RFC 3339 times, UTF-8 validation and the
 * redaction of a database setting's password.
 */
#include "tokend/util.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "tokend/err.h"

static const char b64url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t util_b64url_encode(const unsigned char *in, size_t len, char *out, size_t outlen)
{
	size_t need = (len / 3) * 4 + (len % 3 ? len % 3 + 1 : 0);
	size_t o = 0;
	size_t i;

	if (outlen < need + 1)
		return 0;
	for (i = 0; i + 2 < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
		out[o++] = b64url_alphabet[(v >> 6) & 63];
		out[o++] = b64url_alphabet[v & 63];
	}
	if (len - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
	} else if (len - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
		out[o++] = b64url_alphabet[(v >> 6) & 63];
	}
	out[o] = '\0';
	return o;
}

/*
 * base64url's alphabet as values, 64 = not in it: a table, since decoding
 * a token's payload and signature is on every verify (a branch per
 * character cost 0.13 us of a 0.75 us check). Rows of 16 from 0x20.
 */
/* clang-format off */
static const unsigned char b64url_values[256] = {
#define X64 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64
	X64, X64,
	64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 62, 64, 64, /* 0x20 */
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 64, 64, 64, 64, 64, 64, /* 0x30 */
	64,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, /* 0x40 */
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 64, 64, 64, 64, 63, /* 0x50 */
	64, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, /* 0x60 */
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 64, 64, 64, 64, 64, /* 0x70 */
	X64, X64, X64, X64, X64, X64, X64, X64,
#undef X64
};
/* clang-format on */

/*
 * Four characters to three bytes at a time (a token's payload and
 * signature are decoded on every verify: the character-at-a-time loop was
 * the largest function of our own in a verify's profile).
 */
int util_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap,
		       size_t *outlen)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t full = len / 4 * 4, o = 0, i;
	unsigned acc = 0, bits = 0;

	if (len % 4 == 1)
		return TOKEND_EINVAL;
	for (i = 0; i < full; i += 4) {
		unsigned a = b64url_values[s[i]], b = b64url_values[s[i + 1]],
			 c = b64url_values[s[i + 2]], d = b64url_values[s[i + 3]];
		unsigned v;

		if ((a | b | c | d) & 64)
			return TOKEND_EINVAL;
		if (outcap - o < 3)
			return TOKEND_ENOMEM;
		v = a << 18 | b << 12 | c << 6 | d;
		out[o++] = (unsigned char)(v >> 16);
		out[o++] = (unsigned char)(v >> 8);
		out[o++] = (unsigned char)v;
	}
	/* The last 2 or 3 characters: 1 or 2 bytes. */
	for (; i < len; i++) {
		unsigned v = b64url_values[s[i]];

		if (v & 64)
			return TOKEND_EINVAL;
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outcap)
				return TOKEND_ENOMEM;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero: one encoding per byte string. */
	if (acc != 0)
		return TOKEND_EINVAL;
	*outlen = o;
	return 0;
}

int util_random(void *buf, size_t len)
{
	if (len > 0x7fffffff || RAND_bytes(buf, (int)len) != 1)
		return TOKEND_ECRYPTO;
	return 0;
}

/*
 * A version-4 uuid from OpenSSL's generator. libuuid's uuid_generate_random()
 * reseeds its fallback generator on every call (getpid, getuid, getppid,
 * gettid and getrandom: five system calls per uuid, 2 % of a refresh).
 */
int util_uuid_new(char out[UUID_STR_LEN])
{
	uuid_t u;

	if (util_random(u, sizeof(u)) != 0)
		return TOKEND_ECRYPTO;
	u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
	u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	uuid_unparse_lower(u, out);
	return 0;
}

bool util_uuid_valid(const char *s)
{
	if (s == NULL)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false; /* '\0' too: a shorter string stops here */
		}
	}
	return s[36] == '\0';
}

void util_time_rfc3339(int64_t t, char out[RFC3339_LEN])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, RFC3339_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		memcpy(out, "1970-01-01T00:00:00Z", RFC3339_LEN);
}

/* Reads exactly n digits at *p into *v, advancing *p. */
static bool digits(const char **p, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return false;
		*v = *v * 10 + (**p - '0');
	}
	return true;
}

int util_time_parse_rfc3339(const char *s, int64_t *out)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	struct tm tm;
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	const char *p = s;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
	    !digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
		return TOKEND_EINVAL;
	p++; /* the T */
	if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
	    !digits(&p, 2, &sec))
		return TOKEND_EINVAL;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return TOKEND_EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
			return TOKEND_EINVAL;
	} else {
		return TOKEND_EINVAL;
	}
	if (*p != '\0' || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
	    mi > 59 || sec > 60)
		return TOKEND_EINVAL;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return TOKEND_EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second counts as :59 */
	t = timegm(&tm);
	if (t == (time_t)-1)
		return TOKEND_EINVAL;
	*out = (int64_t)t - sign * (oh * 3600 + om * 60);
	return 0;
}

int64_t util_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

uint64_t util_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

bool util_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned cp;
		uint64_t w;

		/* Eight ASCII bytes at a time: tokens and form bodies are ASCII. */
		if (len - i >= 8 && (memcpy(&w, s + i, 8), (w & 0x8080808080808080ull) == 0)) {
			i += 8;
			continue;
		}
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1fu;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0fu;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07u;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

void util_buf_add(struct util_buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void util_buf_puts(struct util_buf *b, const char *s)
{
	util_buf_add(b, s, strlen(s));
}

void util_buf_json_string(struct util_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;

	if (s == NULL) {
		util_buf_add(b, "null", 4);
		return;
	}
	util_buf_add(b, "\"", 1);
	for (size_t i = 0;; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
		if (c != '\0' && c >= 0x20 && c != '"' && c != '\\') {
			run++;
			continue;
		}
		util_buf_add(b, s + i - run, run);
		run = 0;
		if (c == '\0')
			break;
		if (c == '"' || c == '\\') {
			esc[1] = (char)c;
			util_buf_add(b, esc, 2);
		} else {
			util_buf_add(b, esc, 6);
		}
	}
	util_buf_add(b, "\"", 1);
}

long util_ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? n : 1;
}

/* Makes t's pthread key once; false if it cannot be made. */
static bool tls_key(struct util_tls *t)
{
	int state = atomic_load_explicit(&t->state, memory_order_acquire);

	if (state == 0) {
		pthread_mutex_lock(&t->lock);
		state = atomic_load(&t->state);
		if (state == 0) {
			state = pthread_key_create(&t->key, t->release) == 0 ? 1 : -1;
			atomic_store_explicit(&t->state, state, memory_order_release);
		}
		pthread_mutex_unlock(&t->lock);
	}
	return state > 0;
}

void *util_tls_get(struct util_tls *t)
{
	return tls_key(t) ? pthread_getspecific(t->key) : NULL;
}

void *util_tls_make(struct util_tls *t)
{
	void *p = util_tls_get(t);

	if (p != NULL || !tls_key(t))
		return p;
	p = calloc(1, t->size);
	if (p != NULL && pthread_setspecific(t->key, p) != 0) {
		free(p);
		p = NULL;
	}
	return p;
}

/* Appends n bytes of s to out (at *o), keeping room for the '\0'. */
static void redact_put(char *out, size_t outlen, size_t *o, const char *s, size_t n)
{
	while (n-- > 0 && *o + 1 < outlen)
		out[(*o)++] = *s++;
}

/* Where a password= value starts at p (a word boundary before it), or NULL. */
static const char *redact_password_at(const char *dsn, const char *p)
{
	if (strncmp(p, "password=", 9) != 0)
		return NULL;
	if (p != dsn && p[-1] != ' ' && p[-1] != '\t' && p[-1] != '?' && p[-1] != '&')
		return NULL;
	return p + 9;
}

void util_dsn_redact(const char *dsn, char *out, size_t outlen)
{
	bool url = strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0;
	const char *p = dsn;
	size_t o = 0;

	if (outlen == 0)
		return;
	if (url) {
		const char *auth = strstr(dsn, "://") + 3;
		size_t alen = strcspn(auth, "/?#");
		const char *at = NULL, *colon;

		/* The last '@' of the authority ends the user info. */
		for (size_t i = 0; i < alen; i++)
			if (auth[i] == '@')
				at = auth + i;
		colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
		if (colon != NULL) {
			redact_put(out, outlen, &o, dsn, (size_t)(colon + 1 - dsn));
			redact_put(out, outlen, &o, "***", 3);
			p = at;
		}
	}
	while (*p != '\0') {
		const char *v = redact_password_at(dsn, p);

		if (v == NULL) {
			redact_put(out, outlen, &o, p++, 1);
			continue;
		}
		redact_put(out, outlen, &o, "password=***", 12);
		if (!url && *v == '\'') { /* conninfo: a quoted value, \' and \\ inside */
			for (v++; *v != '\0' && *v != '\''; v++)
				if (*v == '\\' && v[1] != '\0')
					v++;
			p = *v == '\'' ? v + 1 : v;
		} else {
			p = v + strcspn(v, url ? "&#" : " \t");
		}
	}
	out[o] = '\0';
}
