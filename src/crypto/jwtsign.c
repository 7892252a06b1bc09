/* SPDX-License-Identifier: MIT */
/*
 * This module implements JWT minting, checking and the JWKS document with
 * OpenSSL directly: HMAC-SHA256 keyed once per key, and the EVP_PKEY parsed
 * once at load for RS256/ES256 (libjwt parses the PEM on every call,
 * 250-350 us; its HS256 path costs four times a bare HMAC plus two JSON
 * round trips, which perf showed as the bulk of listing API tokens). Each
 * key's header is serialised once. Checking is ours for every algorithm,
 * because libjwt 1.10 verifies "none" with an empty key, accepts algorithm
 * confusion, lets duplicate claims through and crashes on huge
 * tokens (../shared/PITFALLS.md): the length is capped before decoding, the
 * key is chosen by kid and must be of the header's alg, a header with crit
 * is refused (no extension is understood), JSON is parsed with
 * JSON_REJECT_DUPLICATES, and MACs are compared with CRYPTO_memcmp.
 */
#include "tokend/jwtsign.h"

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto/keys.h"
#include "tokend/err.h"
#include "tokend/util.h"

#define SEG_MAX JWTSIGN_MAX_TOKEN /* decoded part never exceeds the token */
#define ES256_SIG 64
/* A signature, DER (as OpenSSL gives it) or JOSE: an RSA key up to 4800 bits;
 * a bigger key fails to sign (EVP_DigestSign is told the room) and verify. */
#define SIG_MAX 600
/* Our claims as JSON text (claims_text()): UUIDs, numbers, short strings,
 * and iss and aud of 255 bytes each, every byte escaped as \u00XX. */
#define CLAIMS_MAX 4096
/* ECDSA P-256 signature, DER: at most 72 bytes. */
#define ES256_DER_MAX 128

/* True for the characters our own claim strings (UUIDs, types) use. */
static bool plain(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || *s == '-' ||
		      *s == '_'))
			return false;
	return true;
}

/*
 * Writes s as a JSON string literal at out + *n, byte for byte as jansson's
 * json_dumps writes it (the form libjwt produced): '"', '\\' and control
 * characters escaped, short forms where JSON has one, UTF-8 as it is.
 * Returns false when s is not valid UTF-8 or does not fit.
 */
static bool put_literal(const char *s, char *out, size_t *n, size_t cap)
{
	static const char shortform[] = {
		['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
	size_t len = strlen(s);

	if (!util_utf8_valid(s, len) || cap - *n < 2)
		return false;
	out[(*n)++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		int w;

		if (ch == '"' || ch == '\\')
			w = snprintf(out + *n, cap - *n, "\\%c", ch);
		else if (ch < sizeof(shortform) && shortform[ch] != 0)
			w = snprintf(out + *n, cap - *n, "\\%c", shortform[ch]);
		else if (ch < 0x20)
			w = snprintf(out + *n, cap - *n, "\\u%04X", ch);
		else
			w = snprintf(out + *n, cap - *n, "%c", ch);
		if (w < 0 || (size_t)w >= cap - *n)
			return false;
		*n += (size_t)w;
	}
	if (cap - *n < 2)
		return false;
	out[(*n)++] = '"';
	out[*n] = '\0';
	return true;
}

/*
 * Writes the claims as JSON with sorted keys and no spaces (the form libjwt
 * and jansson's JSON_SORT_KEYS produce) into out. Our string claims are
 * UUIDs and fixed words; only iss/aud, the configured ones, need escaping.
 * Returns the length, or 0 if a claim is not plain, iss or aud not UTF-8,
 * or out is too small.
 */
static size_t claims_text(const struct jwtsign_claims *c, char *out, size_t cap)
{
	const char *strs[] = {c->jti, c->sid, c->team_uuid, c->token_type, c->user_id};
	size_t n = 0;
	int w;

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strs[i] != NULL && !plain(strs[i]))
			return 0;
#define PUT(...)                                             \
	do {                                                 \
		w = snprintf(out + n, cap - n, __VA_ARGS__); \
		if (w < 0 || (size_t)w >= cap - n)           \
			return 0;                            \
		n += (size_t)w;                              \
	} while (0)
	PUT("{");
	if (c->audience && c->audience[0]) {
		PUT("\"aud\":");
		if (!put_literal(c->audience, out, &n, cap))
			return 0;
		PUT(",");
	}
	PUT("\"exp\":%lld,\"iat\":%lld", (long long)c->exp, (long long)c->iat);
	if (c->issuer && c->issuer[0]) {
		PUT(",\"iss\":");
		if (!put_literal(c->issuer, out, &n, cap))
			return 0;
	}
	if (c->jti)
		PUT(",\"jti\":\"%s\"", c->jti);
	if (c->sid)
		PUT(",\"sid\":\"%s\"", c->sid);
	if (c->team_uuid)
		PUT(",\"team_uuid\":\"%s\"", c->team_uuid);
	if (c->token_type)
		PUT(",\"token_type\":\"%s\"", c->token_type);
	if (c->user_id)
		PUT(",\"user_id\":\"%s\"", c->user_id);
	PUT("}");
#undef PUT
	return n;
}

/*
 * Each thread keeps a copy of the HMAC context of the last HS256 key it
 * used and re-initialises it per MAC: copying the key's context for every
 * MAC (EVP_MAC_CTX_dup) cost 590 ns and a dozen allocations, re-initialising
 * a kept one 290 ns. Copies are named by the key's serial, never reused
 * for another key, even one loaded later at the same address.
 */
struct hmac_copy {
	unsigned long long serial;
	EVP_MAC_CTX *ctx;
};

static void hmac_copy_free(void *p)
{
	struct hmac_copy *c = p;

	EVP_MAC_CTX_free(c->ctx);
	free(c);
}

static struct util_tls hmac_copies = UTIL_TLS_INIT(sizeof(struct hmac_copy), hmac_copy_free);

/* This thread's context for k, ready for EVP_MAC_update; NULL on failure. */
static EVP_MAC_CTX *hmac_ctx(const struct key *k)
{
	struct hmac_copy *c = util_tls_make(&hmac_copies);

	if (c == NULL)
		return NULL;
	if (c->ctx != NULL && c->serial == k->serial)
		return EVP_MAC_init(c->ctx, NULL, 0, NULL) == 1 ? c->ctx : NULL;
	EVP_MAC_CTX_free(c->ctx);
	c->ctx = EVP_MAC_CTX_dup(k->mac); /* keyed and initialised */
	c->serial = k->serial;
	return c->ctx;
}

/* HMAC-SHA256 of data with k into mac (32 bytes). */
static int hs256(const struct key *k, const char *data, size_t len, unsigned char *mac)
{
	EVP_MAC_CTX *ctx = hmac_ctx(k);
	size_t outl = 0;

	if (ctx == NULL)
		return TOKEND_ENOMEM;
	if (EVP_MAC_update(ctx, (const unsigned char *)data, len) != 1 ||
	    EVP_MAC_final(ctx, mac, &outl, 32) != 1 || outl != 32)
		return TOKEND_ECRYPTO;
	return 0;
}

/* Converts a DER ECDSA signature to the JOSE r||s form. */
static int ecdsa_der_to_raw(const unsigned char *der, size_t len, unsigned char raw[ES256_SIG])
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
	const BIGNUM *r, *s;
	int rc = TOKEND_ECRYPTO;

	if (sig == NULL)
		return rc;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32)
		rc = 0;
	ECDSA_SIG_free(sig);
	return rc;
}

/* Signs data with an RS256/ES256 key into sig (JOSE form). */
static int pkey_sign(const struct key *k, const char *data, size_t len, unsigned char *sig,
		     size_t *siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char der[SIG_MAX];
	size_t dlen = sizeof(der);
	int rc = TOKEND_ECRYPTO;

	if (ctx == NULL)
		return TOKEND_ENOMEM;
	if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) != 1 ||
	    EVP_DigestSign(ctx, der, &dlen, (const unsigned char *)data, len) != 1)
		goto out;
	if (k->alg == KEY_ES256) {
		rc = ecdsa_der_to_raw(der, dlen, sig);
		*siglen = ES256_SIG;
	} else {
		memcpy(sig, der, dlen);
		*siglen = dlen;
		rc = 0;
	}
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

static bool sig_ok(const struct key *k, const char *input, size_t len, const unsigned char *sig,
		   size_t siglen);

/*
 * Mints with key k: the header tokend writes for k (kept base64url'ed in
 * k->header_b64), the claims, and the signature.
 */
static int mint_key(const struct key *k, const struct jwtsign_claims *c, char **token)
{
	char claims[CLAIMS_MAX];
	size_t clen = claims_text(c, claims, sizeof(claims));
	size_t cap = k->header_len + clen * 4 / 3 + 1024;
	unsigned char sig[SIG_MAX];
	size_t siglen = 32;
	char *out;
	size_t n;
	int rc;

	*token = NULL;
	if (clen == 0)
		return TOKEND_EINVAL;
	out = malloc(cap);
	if (out == NULL)
		return TOKEND_ENOMEM;
	memcpy(out, k->header_b64, k->header_len);
	n = k->header_len;
	out[n++] = '.';
	n += util_b64url_encode((const unsigned char *)claims, clen, out + n, cap - n);
	rc = k->alg == KEY_HS256 ? hs256(k, out, n, sig) : pkey_sign(k, out, n, sig, &siglen);
	/*
	 * An allocation failure inside OpenSSL 3.0's refresh of an RSA key's
	 * blinding leaves that key's next 31 signatures invalid (shown by
	 * tests/unit/test_torture.c): check each RS256 signature (about 16 us
	 * on a 220 us signature) rather than hand out a token that never
	 * verifies.
	 */
	if (rc == 0 && k->alg == KEY_RS256 && !sig_ok(k, out, n, sig, siglen))
		rc = TOKEND_ECRYPTO;
	if (rc != 0) {
		free(out);
		return rc;
	}
	out[n++] = '.';
	util_b64url_encode(sig, siglen, out + n, cap - n);
	*token = out;
	return 0;
}

int jwtsign_mint(const struct jwtsign_keys *keys, const struct jwtsign_claims *c, char **token)
{
	struct jwtsign_keys *ks = (struct jwtsign_keys *)keys; /* the lock only */
	const struct key *k;
	int rc = TOKEND_ENOTFOUND;

	*token = NULL;
	pthread_rwlock_rdlock(&ks->lock);
	k = c->kid ? keys_find(ks->set, c->kid) : &ks->set->keys[ks->set->current];
	if (k != NULL)
		rc = mint_key(k, c, token);
	pthread_rwlock_unlock(&ks->lock);
	return rc;
}

/* Verifies the signature part of a token against signing input [0, len). */
static bool sig_ok(const struct key *k, const char *input, size_t len, const unsigned char *sig,
		   size_t siglen)
{
	bool ok = false;

	if (k->alg == KEY_HS256) {
		unsigned char mac[32];
		ok = siglen == sizeof(mac) && hs256(k, input, len, mac) == 0 &&
		     CRYPTO_memcmp(mac, sig, sizeof(mac)) == 0;
		OPENSSL_cleanse(mac, sizeof(mac));
		return ok;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char der[ES256_DER_MAX];
	const unsigned char *vsig = sig;
	size_t vlen = siglen;

	if (ctx == NULL)
		return false;
	if (k->alg == KEY_ES256) {
		/* JOSE r||s to DER; any other length is simply invalid. */
		ECDSA_SIG *es = siglen == ES256_SIG ? ECDSA_SIG_new() : NULL;
		BIGNUM *r = es ? BN_bin2bn(sig, 32, NULL) : NULL;
		BIGNUM *s = es ? BN_bin2bn(sig + 32, 32, NULL) : NULL;
		unsigned char *p = der;
		int n;
		if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
			BN_free(r);
			BN_free(s);
			ECDSA_SIG_free(es);
			goto out;
		}
		n = i2d_ECDSA_SIG(es, NULL) <= (int)sizeof(der) ? i2d_ECDSA_SIG(es, &p) : -1;
		ECDSA_SIG_free(es);
		if (n <= 0)
			goto out;
		vsig = der;
		vlen = (size_t)n;
	}
	ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
	     EVP_DigestVerify(ctx, vsig, vlen, (const unsigned char *)input, len) == 1;
out:
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* Decodes one base64url part into JSON (object, no duplicate keys). */
static json_t *part_json(const char *s, size_t len)
{
	unsigned char buf[SEG_MAX];
	size_t n;
	json_t *v;

	if (util_b64url_decode(s, len, buf, sizeof(buf), &n) != 0)
		return NULL;
	v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
	if (v != NULL && !json_is_object(v)) {
		json_decref(v);
		v = NULL;
	}
	return v;
}

/* Copies the string claim name into out when it is a string that fits. */
static bool copy_str(const json_t *o, const char *name, char *out, size_t cap)
{
	const char *s = json_string_value(json_object_get(o, name));

	if (s == NULL || strlen(s) >= cap)
		return false;
	memcpy(out, s, strlen(s) + 1);
	return true;
}

/* Reads an integer NumericDate claim; false when absent or not an integer. */
static bool int_claim(const json_t *o, const char *name, int64_t *out, bool required)
{
	const json_t *v = json_object_get(o, name);

	if (v == NULL)
		return !required;
	if (!json_is_integer(v))
		return false;
	*out = (int64_t)json_integer_value(v);
	return true;
}

/*
 * What every accepted token must satisfy, whichever path read its claims:
 * one of our types, exp not passed, iat and nbf not in the future (each
 * within the leeway), jti and user_id UUIDs, team_uuid for API tokens (and
 * none kept for the others).
 */
static const char *claims_valid(struct jwtsign_token *out, int64_t nbf,
				const struct jwtsign_policy *pol)
{
	if (strcmp(out->token_type, "access") != 0 && strcmp(out->token_type, "refresh") != 0 &&
	    strcmp(out->token_type, "api") != 0)
		return "Token has no valid type";
	if (out->exp <= pol->now - pol->leeway)
		return "Token is expired";
	if (out->iat > pol->now + pol->leeway || nbf > pol->now + pol->leeway)
		return "Token is not yet valid";
	if (!util_uuid_valid(out->jti) || !util_uuid_valid(out->user_id))
		return "Token has no valid jti or user_id";
	if (out->sid[0] != '\0' && !util_uuid_valid(out->sid))
		return "Token has no valid sid";
	/* Whole fields cleared: no byte of a dropped claim stays in *out. */
	if (strcmp(out->token_type, "api") == 0)
		memset(out->sid, 0, sizeof(out->sid)); /* API tokens belong to no session */
	if (strcmp(out->token_type, "api") != 0)
		memset(out->team_uuid, 0, sizeof(out->team_uuid));
	else if (!util_uuid_valid(out->team_uuid))
		return "Token has no valid team_uuid";
	return NULL;
}

/* The full path: claims read from the parsed payload, then iss/aud. */
static const char *claims_check(const json_t *p, const struct jwtsign_policy *pol,
				struct jwtsign_token *out)
{
	int64_t nbf = 0;
	const char *why;

	if (!copy_str(p, "token_type", out->token_type, sizeof(out->token_type)))
		return "Token has no valid type";
	if (!int_claim(p, "exp", &out->exp, true))
		return "Token has no valid exp claim";
	if (!int_claim(p, "iat", &out->iat, true))
		return "Token has no valid iat claim";
	if (!int_claim(p, "nbf", &nbf, false))
		return "Token has no valid nbf claim";
	if (!copy_str(p, "jti", out->jti, sizeof(out->jti)) ||
	    !copy_str(p, "user_id", out->user_id, sizeof(out->user_id)))
		return "Token has no valid jti or user_id";
	if (!copy_str(p, "team_uuid", out->team_uuid, sizeof(out->team_uuid)))
		out->team_uuid[0] = '\0';
	/* Optional (tokens minted before sessions have none), but never malformed. */
	if (json_object_get(p, "sid") != NULL &&
	    (!copy_str(p, "sid", out->sid, sizeof(out->sid)) || out->sid[0] == '\0'))
		return "Token has no valid sid";
	why = claims_valid(out, nbf, pol);
	if (why != NULL)
		return why;
	if (pol->issuer && pol->issuer[0]) {
		const char *iss = json_string_value(json_object_get(p, "iss"));
		if (iss == NULL || strcmp(iss, pol->issuer) != 0)
			return "Token has a wrong issuer";
	}
	if (pol->audience && pol->audience[0]) {
		const json_t *aud = json_object_get(p, "aud");
		bool found = json_is_string(aud) &&
			     strcmp(json_string_value(aud), pol->audience) == 0;
		size_t i;
		const json_t *v;
		if (json_is_array(aud))
			json_array_foreach(aud, i, v)
				found = found || (json_is_string(v) &&
						  strcmp(json_string_value(v), pol->audience) == 0);
		if (!found)
			return "Token has a wrong audience";
	}
	return NULL;
}

/* A cursor over the decoded payload of the fast path. */
struct canon {
	const char *p, *end;
};

/* Consumes the literal s (n bytes) at the cursor. */
static bool canon_lit(struct canon *c, const char *s, size_t n)
{
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
		return false;
	c->p += n;
	return true;
}

/* An integer exactly as "%lld" writes it: no '+', no leading zero, no "-0". */
static bool canon_int(struct canon *c, int64_t *out)
{
	bool neg = c->p < c->end && *c->p == '-';
	const char *q = c->p + neg;
	uint64_t v = 0;
	size_t digits = 0;

	while (q < c->end && *q >= '0' && *q <= '9') {
		unsigned d = (unsigned)(*q - '0');
		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return false; /* INT64_MIN too: the full path has it */
		v = v * 10 + d;
		q++;
		digits++;
	}
	if (digits == 0 || (digits > 1 && c->p[neg] == '0') || (neg && v == 0))
		return false;
	*out = neg ? -(int64_t)v : (int64_t)v;
	c->p = q;
	return true;
}

/* A string of plain() characters, copied into out (cap bytes with its NUL). */
static bool canon_str(struct canon *c, char *out, size_t cap)
{
	size_t n = 0;

	if (!canon_lit(c, "\"", 1))
		return false;
	for (; c->p < c->end && *c->p != '"'; c->p++) {
		char ch = *c->p;
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || ch == '-' ||
		      ch == '_') ||
		    n + 1 >= cap)
			return false;
		out[n++] = ch;
	}
	if (c->p == c->end)
		return false;
	c->p++;
	out[n] = '\0';
	return true;
}

/* An optional member ,"key":"<non-empty plain string>"; out stays "" without it. */
static bool canon_opt(struct canon *c, const char *key, size_t klen, char *out, size_t cap)
{
	out[0] = '\0';
	if (!canon_lit(c, key, klen))
		return true;
	return canon_str(c, out, cap) && out[0] != '\0';
}

#define LIT(c, s) canon_lit((c), (s), sizeof(s) - 1)

/*
 * The fast path for payloads in exactly the form tokend mints (claims_text:
 * sorted keys, no spaces, our claims only, plain strings): one pass that
 * reads the claims in that order and accepts only those very bytes, so
 * duplicates, odd types, escapes or extra claims all take the full JSON
 * path (fuzz/fuzz_jwt.c checks that both paths agree). Not used when the
 * policy asks for iss or aud. It replaced a search per claim and a
 * re-serialisation with snprintf: 7 % of a verify (perf).
 */
static const char *fast_claims(const char *b64, size_t b64len, const struct jwtsign_policy *pol,
			       struct jwtsign_token *out, bool *done)
{
	char payload[CLAIMS_MAX];
	size_t n;
	struct canon c;

	*done = false;
	if (pol->full_json || (pol->issuer && pol->issuer[0]) ||
	    (pol->audience && pol->audience[0]) ||
	    util_b64url_decode(b64, b64len, (unsigned char *)payload, sizeof(payload), &n) != 0)
		return NULL;
	c.p = payload;
	c.end = payload + n;
	if (!LIT(&c, "{\"exp\":") || !canon_int(&c, &out->exp) || !LIT(&c, ",\"iat\":") ||
	    !canon_int(&c, &out->iat) || !LIT(&c, ",\"jti\":") ||
	    !canon_str(&c, out->jti, sizeof(out->jti)) ||
	    !canon_opt(&c, ",\"sid\":", 7, out->sid, sizeof(out->sid)) ||
	    !canon_opt(&c, ",\"team_uuid\":", 13, out->team_uuid, sizeof(out->team_uuid)) ||
	    !LIT(&c, ",\"token_type\":") ||
	    !canon_str(&c, out->token_type, sizeof(out->token_type)) || !LIT(&c, ",\"user_id\":") ||
	    !canon_str(&c, out->user_id, sizeof(out->user_id)) || !LIT(&c, "}") || c.p != c.end) {
		/* The full path starts from a clean slate. */
		memset(out->jti, 0, sizeof(out->jti));
		memset(out->sid, 0, sizeof(out->sid));
		memset(out->team_uuid, 0, sizeof(out->team_uuid));
		memset(out->token_type, 0, sizeof(out->token_type));
		memset(out->user_id, 0, sizeof(out->user_id));
		out->exp = out->iat = 0;
		return NULL;
	}
	*done = true;
	return claims_valid(out, 0, pol);
}

#undef LIT

/* jwtsign_check() with the set loaded now; *unknown when its kid is not in it. */
static int check_once(const struct jwtsign_keys *keys, const char *token, size_t len,
		      const struct jwtsign_policy *policy, struct jwtsign_token *out,
		      const char **reason, bool *unknown)
{
	struct jwtsign_keys *ks = (struct jwtsign_keys *)keys;
	const char *dot1, *dot2;
	json_t *header = NULL, *payload = NULL;
	unsigned char sig[SIG_MAX];
	size_t siglen;
	const char *alg, *kid, *typ;
	const char *why = "Token is invalid";
	const struct key *k;
	bool locked = false;
	bool fast = false;

	memset(out, 0, sizeof(*out));
	/* Length first: libjwt-style decoders fall over on huge input. */
	if (len == 0 || len > JWTSIGN_MAX_TOKEN || memchr(token, '\0', len) != NULL)
		goto fail;
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
		why = "Token must have three parts";
		goto fail;
	}
	if (util_b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), sig, sizeof(sig),
			       &siglen) != 0) {
		why = "Token signature is malformed";
		goto fail;
	}
	pthread_rwlock_rdlock(&ks->lock);
	locked = true;
	/* Our own header, byte for byte: its kid names the key, alg is the key's. */
	k = NULL;
	for (size_t i = 0; i < ks->set->count && k == NULL; i++)
		if (ks->set->keys[i].header_len == (size_t)(dot1 - token) &&
		    memcmp(ks->set->keys[i].header_b64, token, (size_t)(dot1 - token)) == 0)
			k = &ks->set->keys[i];
	if (k == NULL) {
		header = part_json(token, (size_t)(dot1 - token));
		if (header == NULL) {
			why = "Token header is not a JSON object";
			goto fail;
		}
		alg = json_string_value(json_object_get(header, "alg"));
		kid = json_string_value(json_object_get(header, "kid"));
		typ = json_string_value(json_object_get(header, "typ"));
		if (json_object_get(header, "typ") != NULL &&
		    (typ == NULL || strcasecmp(typ, "JWT") != 0)) {
			why = "Token has a wrong typ";
			goto fail;
		}
		/*
		 * RFC 7515 4.1.11: crit names extensions the recipient must
		 * understand or refuse the token. We understand none, so any crit
		 * member at all ([], a string, null included) is refused; our own
		 * header (the fast path above) never has one.
		 */
		if (json_object_get(header, "crit") != NULL) {
			why = "Token header has a crit member";
			goto fail;
		}
		if (alg == NULL || kid == NULL) {
			why = "Token header lacks alg or kid";
			goto fail;
		}
		/* The key comes from kid, never from alg; then alg must be the key's. */
		k = keys_find(ks->set, kid);
		if (k == NULL) {
			/* Only a kid of our form can be in the directory. */
			*unknown = strlen(kid) == JWTSIGN_KID_LEN &&
				   strspn(kid, "0123456789abcdef") == JWTSIGN_KID_LEN;
			why = "Token is signed by an unknown key";
			goto fail;
		}
		if (strcmp(alg, keys_alg_name(k->alg)) != 0) {
			why = "Token algorithm does not match its key";
			goto fail;
		}
	}
	if (!sig_ok(k, token, (size_t)(dot2 - token), sig, siglen)) {
		why = "Token signature is invalid";
		goto fail;
	}
	memcpy(out->kid, k->kid, sizeof(out->kid));
	pthread_rwlock_unlock(&ks->lock);
	locked = false;
	why = fast_claims(dot1 + 1, (size_t)(dot2 - dot1 - 1), policy, out, &fast);
	if (fast) {
		if (why != NULL)
			goto fail;
		json_decref(header);
		if (reason)
			*reason = NULL;
		return 0;
	}
	payload = part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (payload == NULL) {
		why = "Token payload is not a JSON object";
		goto fail;
	}
	why = claims_check(payload, policy, out);
	if (why != NULL)
		goto fail;
	json_decref(header);
	json_decref(payload);
	if (reason)
		*reason = NULL;
	return 0;
fail:
	if (locked)
		pthread_rwlock_unlock(&ks->lock);
	json_decref(header);
	json_decref(payload);
	if (reason)
		*reason = why;
	return TOKEND_EAUTH;
}

int jwtsign_check(const struct jwtsign_keys *keys, const char *token, size_t len,
		  const struct jwtsign_policy *policy, struct jwtsign_token *out,
		  const char **reason)
{
	struct jwtsign_keys *ks = (struct jwtsign_keys *)keys;
	unsigned gen = atomic_load(&ks->generation);
	bool unknown = false;
	int rc = check_once(keys, token, len, policy, out, reason, &unknown);

	if (rc == 0 || !unknown || !ks->unknown_reload)
		return rc;
	/*
	 * A kid we do not know may be a key added to the directory since we
	 * read it (issue 13): look again (at most once a second, the gate in
	 * keys_reload.c) and check once more if the set changed, by us or by
	 * another thread meanwhile.
	 */
	if (jwtsign_keys_refresh(ks, JWTSIGN_RELOAD_UNKNOWN_KID) != 1 &&
	    atomic_load(&ks->generation) == gen)
		return rc;
	return check_once(keys, token, len, policy, out, reason, &unknown);
}

/* Adds the base64url of a big-endian BIGNUM param of pkey under name. */
static int jwk_bn(json_t *jwk, const char *name, const EVP_PKEY *pkey, const char *param, int pad)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	char b64[1400];
	int n;

	if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
		return -1;
	n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	BN_free(bn);
	if (n <= 0 || (size_t)n > sizeof(buf))
		return -1;
	util_b64url_encode(buf, (size_t)n, b64, sizeof(b64));
	return json_object_set_new(jwk, name, json_string(b64));
}

char *jwtsign_jwks(const struct jwtsign_keys *keys)
{
	struct jwtsign_keys *ks = (struct jwtsign_keys *)keys;
	json_t *doc = json_pack("{s:[]}", "keys");
	json_t *arr = json_object_get(doc, "keys");
	char *out = NULL;

	if (doc == NULL)
		return NULL;
	pthread_rwlock_rdlock(&ks->lock);
	for (size_t i = 0; i < ks->set->count; i++) {
		const struct key *k = &ks->set->keys[i];
		json_t *jwk;
		int bad;
		if (k->alg == KEY_HS256)
			continue; /* a shared secret is never published */
		jwk = json_pack("{s:s, s:s, s:s}", "kid", k->kid, "alg", keys_alg_name(k->alg),
				"use", "sig");
		if (jwk == NULL)
			goto out;
		if (k->alg == KEY_RS256)
			bad = json_object_set_new(jwk, "kty", json_string("RSA")) ||
			      jwk_bn(jwk, "n", k->pkey, OSSL_PKEY_PARAM_RSA_N, 0) ||
			      jwk_bn(jwk, "e", k->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
		else
			bad = json_object_set_new(jwk, "kty", json_string("EC")) ||
			      json_object_set_new(jwk, "crv", json_string("P-256")) ||
			      jwk_bn(jwk, "x", k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32) ||
			      jwk_bn(jwk, "y", k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
		if (bad) {
			json_decref(jwk);
			goto out;
		}
		if (json_array_append_new(arr, jwk) != 0) /* frees jwk */
			goto out;
	}
	out = json_dumps(doc, JSON_COMPACT);
out:
	pthread_rwlock_unlock(&ks->lock);
	json_decref(doc);
	return out;
}
