/* SPDX-License-Identifier: MIT */
/*
 * This suite tests checking a JWT against a key set of
 * include/tokend/jwtsign.h (src/crypto/jwtsign.c): every rejection, crafted
 * here with util_b64url_encode and OpenSSL's HMAC() over the key file's
 * bytes; and, on the same fixture of three keys (one per algorithm),
 * minting with a chosen kid, the JWKS, rotating, retiring and reloading
 * keys (src/crypto/keys.c, keys_reload.c). The store's refresh-token code
 * is tested by test_store_refresh.c.
 */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokend/err.h"
#include "tokend/jwtsign.h"
#include "tokend/util.h"
#include "unit.h"

static char base[64];
static char tmpdir[128];
static char keydir[192];

static void mk_tmpdir(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(keydir, sizeof keydir, "%s/keys", tmpdir);
}

/* ======================================================================== */
/* jwtsign: checking tokens                                                 */
/* ======================================================================== */

static struct jwtsign_keys *keys;
static char hs_kid[JWTSIGN_KID_LEN + 1];
static char rs_kid[JWTSIGN_KID_LEN + 1];
static char es_kid[JWTSIGN_KID_LEN + 1];
static unsigned char hs_key[128];
static size_t hs_keylen;
static char rs_pub[4096];
static char es_pub[1024];
static int64_t t_now;

#define JTI "123e4567-e89b-42d3-a456-426614174000"
#define UID "00000000-1111-4222-8333-444444444444"
#define TEAM "99999999-1111-4222-8333-444444444444"
#define SID "77777777-1111-4222-8333-444444444444"
/* The canonical form (sorted keys, no spaces) with a sid, as tokend mints it. */
#define P_SID(sid)                                                      \
	"{\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI "\",\"sid\":" sid \
	",\"token_type\":\"access\",\"user_id\":\"" UID "\"}"

static size_t read_file(const char *p, char *buf, size_t cap)
{
	FILE *f = fopen(p, "rb");
	size_t n;

	ck_assert_msg(f != NULL, "open %s", p);
	n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	fclose(f);
	return n;
}

static void key_path(char *out, size_t cap, const char *kid, const char *alg)
{
	snprintf(out, cap, "%s/%s.%s.key", keydir, kid, alg);
}

/* The public key of the PEM private key file of kid, as PEM text. */
static void public_pem(const char *kid, const char *alg, char *out, size_t cap)
{
	char p[512], pem[8192];
	size_t n;
	BIO *in, *mem;
	EVP_PKEY *pk;
	char *data;
	long len;

	key_path(p, sizeof p, kid, alg);
	n = read_file(p, pem, sizeof pem);
	in = BIO_new_mem_buf(pem, (int)n);
	ck_assert_ptr_nonnull(in);
	pk = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(pk);
	mem = BIO_new(BIO_s_mem());
	ck_assert_int_eq(PEM_write_bio_PUBKEY(mem, pk), 1);
	len = BIO_get_mem_data(mem, &data);
	ck_assert_int_lt(len, (long)cap);
	memcpy(out, data, (size_t)len);
	out[len] = '\0';
	BIO_free(mem);
	BIO_free(in);
	EVP_PKEY_free(pk);
}

static void rot(const char *alg, char kid[JWTSIGN_KID_LEN + 1])
{
	char err[256] = "";

	ck_assert_msg(jwtsign_key_rotate(keydir, alg, kid, err, sizeof err) == 0, "rotate %s: %s",
		      alg, err);
	ck_assert_uint_eq(strlen(kid), JWTSIGN_KID_LEN);
}

static void load_keys(struct jwtsign_keys **k)
{
	char err[256] = "";

	*k = NULL;
	ck_assert_msg(jwtsign_keys_load(keydir, "HS256", 0, k, err, sizeof err) == 0, "load: %s",
		      err);
}

/*
 * The key set every "check"/"keys" test starts from: RS256, ES256, then
 * HS256 (current), generated once by main() (RSA key generation is slow)
 * and copied into each test's directory.
 */
static char template_dir[128];

static int copy_dir(const char *from, const char *to)
{
	DIR *d = opendir(from);
	struct dirent *de;
	char src[512], dst[512], buf[16384];

	if (d == NULL || mkdir(to, 0700) != 0) {
		if (d)
			closedir(d);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		FILE *in, *out;
		size_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(src, sizeof src, "%s/%s", from, de->d_name);
		snprintf(dst, sizeof dst, "%s/%s", to, de->d_name);
		in = fopen(src, "rb");
		n = in ? fread(buf, 1, sizeof buf, in) : 0;
		if (in)
			fclose(in);
		out = fopen(dst, "wb");
		if (out == NULL || chmod(dst, 0600) != 0) {
			if (out)
				fclose(out);
			closedir(d);
			return -1;
		}
		fwrite(buf, 1, n, out);
		fclose(out);
	}
	closedir(d);
	return 0;
}

static int make_template(void)
{
	char err[256] = "";

	snprintf(template_dir, sizeof template_dir, "%s/template-keys", base);
	if (jwtsign_key_rotate(template_dir, "RS256", rs_kid, err, sizeof err) != 0 ||
	    jwtsign_key_rotate(template_dir, "ES256", es_kid, err, sizeof err) != 0 ||
	    jwtsign_key_rotate(template_dir, "HS256", hs_kid, err, sizeof err) != 0) {
		fprintf(stderr, "template keys: %s\n", err);
		return -1;
	}
	return 0;
}

static void jwt_setup(void)
{
	char p[512], text[512];
	size_t n;

	mk_tmpdir();
	ck_assert_int_eq(copy_dir(template_dir, keydir), 0);
	load_keys(&keys);
	ck_assert_str_eq(jwtsign_current_kid(keys), hs_kid);
	key_path(p, sizeof p, hs_kid, "HS256");
	n = read_file(p, text, sizeof text);
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		text[--n] = '\0';
	ck_assert_int_eq(util_b64url_decode(text, n, hs_key, sizeof hs_key, &hs_keylen), 0);
	ck_assert_uint_eq(hs_keylen, JWTSIGN_HS_KEY_BYTES);
	public_pem(rs_kid, "RS256", rs_pub, sizeof rs_pub);
	public_pem(es_kid, "ES256", es_pub, sizeof es_pub);
	t_now = util_now();
}

static void jwt_teardown(void)
{
	jwtsign_keys_free(&keys);
	rm_rf(tmpdir);
}

static size_t b64(const void *in, size_t len, char *out, size_t cap)
{
	size_t n = util_b64url_encode(in, len, out, cap);

	ck_assert_uint_gt(n + (len == 0), 0);
	return n;
}

/* "<h>.<p>.<HMAC-SHA256 over h.p with key>" from two literal segments. */
static char *sign_segs(const char *h, const char *p, const void *key, size_t keylen)
{
	size_t hl = strlen(h), pl = strlen(p);
	size_t cap = hl + pl + 64;
	char *tok = malloc(cap);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;

	ck_assert_ptr_nonnull(tok);
	snprintf(tok, cap, "%s.%s", h, p);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)tok,
				   hl + 1 + pl, mac, &maclen));
	tok[hl + 1 + pl] = '.';
	b64(mac, maclen, tok + hl + pl + 2, cap - hl - pl - 2);
	return tok;
}

/* Replaces {KID} {RSKID} {ESKID} {NOW} {EXP} {PAST} {FUT} in tmpl. */
static void subst(const char *tmpl, char *out, size_t cap)
{
	static const char *const names[] = {"{KID}", "{RSKID}", "{ESKID}", "{NOW}",
					    "{EXP}", "{PAST}",  "{FUT}"};
	char vals[7][32];
	size_t o = 0;

	snprintf(vals[0], sizeof vals[0], "%s", hs_kid);
	snprintf(vals[1], sizeof vals[1], "%s", rs_kid);
	snprintf(vals[2], sizeof vals[2], "%s", es_kid);
	snprintf(vals[3], sizeof vals[3], "%lld", (long long)t_now);
	snprintf(vals[4], sizeof vals[4], "%lld", (long long)t_now + 300);
	snprintf(vals[5], sizeof vals[5], "%lld", (long long)t_now - 60);
	snprintf(vals[6], sizeof vals[6], "%lld", (long long)t_now + 120);
	while (*tmpl) {
		bool hit = false;

		for (int i = 0; i < 7; i++) {
			size_t nl = strlen(names[i]);
			if (strncmp(tmpl, names[i], nl) == 0) {
				size_t vl = strlen(vals[i]);
				ck_assert_uint_lt(o + vl, cap);
				memcpy(out + o, vals[i], vl);
				o += vl;
				tmpl += nl;
				hit = true;
				break;
			}
		}
		if (!hit) {
			ck_assert_uint_lt(o + 1, cap);
			out[o++] = *tmpl++;
		}
	}
	out[o] = '\0';
}

enum keymode { K_HS, K_OTHER, K_RSPUB, K_ESPUB, K_NOSIG };

/* A token from header and payload JSON templates, signed as mode says. */
static char *craft(const char *htmpl, const char *ptmpl, enum keymode mode)
{
	char hj[1024], pj[4096], hs[2048], ps[8192];
	static const unsigned char other[64] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
	char *tok;

	subst(htmpl, hj, sizeof hj);
	subst(ptmpl, pj, sizeof pj);
	b64(hj, strlen(hj), hs, sizeof hs);
	b64(pj, strlen(pj), ps, sizeof ps);
	switch (mode) {
	case K_HS: return sign_segs(hs, ps, hs_key, hs_keylen);
	case K_OTHER: return sign_segs(hs, ps, other, sizeof other);
	case K_RSPUB: return sign_segs(hs, ps, rs_pub, strlen(rs_pub));
	case K_ESPUB: return sign_segs(hs, ps, es_pub, strlen(es_pub));
	case K_NOSIG:
	default:
		tok = malloc(strlen(hs) + strlen(ps) + 3);
		ck_assert_ptr_nonnull(tok);
		sprintf(tok, "%s.%s.", hs, ps);
		return tok;
	}
}

static int check_pol(const char *tok, const struct jwtsign_policy *pol, struct jwtsign_token *out)
{
	struct jwtsign_token dummy;
	const char *reason = NULL;
	int rc = jwtsign_check(keys, tok, strlen(tok), pol, out ? out : &dummy, &reason);

	if (rc != 0) {
		ck_assert_int_eq(rc, TOKEND_EAUTH);
		ck_assert_ptr_nonnull(reason);
	}
	return rc;
}

static int check(const char *tok, struct jwtsign_token *out)
{
	struct jwtsign_policy pol = {.now = t_now, .leeway = 0, .issuer = NULL, .audience = NULL};

	return check_pol(tok, &pol, out);
}

#define H "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"{KID}\"}"
#define P_(extra)                                                               \
	"{\"token_type\":\"access\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI \
	"\",\"user_id\":\"" UID "\"" extra "}"
#define P P_("")

struct bad_case {
	const char *name, *hdr, *payload;
	enum keymode mode;
};

static const struct bad_case bad_cases[] = {
	{"alg none", "{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"{KID}\"}", P, K_NOSIG},
	{"alg None signed", "{\"alg\":\"None\",\"typ\":\"JWT\",\"kid\":\"{KID}\"}", P, K_HS},
	{"alg NONE no kid", "{\"alg\":\"NONE\",\"typ\":\"JWT\"}", P, K_NOSIG},
	{"alg missing", "{\"typ\":\"JWT\",\"kid\":\"{KID}\"}", P, K_HS},
	{"alg HS384 header", "{\"alg\":\"HS384\",\"typ\":\"JWT\",\"kid\":\"{KID}\"}", P, K_HS},
	{"alg RS256 header on HS kid", "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"{KID}\"}", P,
	 K_HS},
	{"alg number", "{\"alg\":256,\"typ\":\"JWT\",\"kid\":\"{KID}\"}", P, K_HS},
	{"kid unknown", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"ffffffffffffffff\"}", P,
	 K_HS},
	{"kid missing", "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", P, K_HS},
	{"kid empty", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"\"}", P, K_HS},
	{"kid number", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":1234}", P, K_HS},
	{"kid null", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":null}", P, K_HS},
	{"kid traversal", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"../{KID}\"}", P, K_HS},
	{"confusion RS public PEM", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"{RSKID}\"}", P,
	 K_RSPUB},
	{"confusion ES public PEM", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"{ESKID}\"}", P,
	 K_ESPUB},
	{"HS key under RS kid", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"{RSKID}\"}", P, K_HS},
	{"typ at+jwt", "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"{KID}\"}", P, K_HS},
	{"header array", "[\"HS256\"]", P, K_HS},
	{"header string", "\"HS256\"", P, K_HS},
	{"header null", "null", P, K_HS},
	{"header not json", "{\"alg\":\"HS256\",\"kid\":\"{KID}\"", P, K_HS},
	{"header dup alg", "{\"alg\":\"none\",\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"{KID}\"}",
	 P, K_HS},
	{"header dup kid",
	 "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"{KID}\",\"kid\":\"ffffffffffffffff\"}", P,
	 K_HS},
	{"payload array", H, "[" P "]", K_HS},
	{"payload string", H, "\"access\"", K_HS},
	{"payload number", H, "42", K_HS},
	{"payload not json", H, "{\"token_type\":\"access\",\"exp\":{EXP}", K_HS},
	{"payload trailing garbage", H, P "x", K_HS},
	{"payload empty", H, "", K_HS},
	{"dup exp past last", H, P_(",\"exp\":{PAST}"), K_HS},
	{"dup exp future last", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"{KID}\"}",
	 "{\"exp\":{PAST},\"token_type\":\"access\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI
	 "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"dup exp same", H, P_(",\"exp\":{EXP}"), K_HS},
	{"dup token_type", H, P_(",\"token_type\":\"access\""), K_HS},
	{"dup user_id", H, P_(",\"user_id\":\"" UID "\""), K_HS},
	{"sid not a uuid", H, P_(",\"sid\":\"abc\""), K_HS},
	{"sid not a uuid, canonical form", H, P_SID("\"abc\""), K_HS},
	{"sid upper case, canonical form", H, P_SID("\"77777777-1111-4222-8333-44444444444A\""),
	 K_HS},
	{"sid number", H, P_(",\"sid\":1"), K_HS},
	{"sid null", H, P_(",\"sid\":null"), K_HS},
	{"sid empty", H, P_(",\"sid\":\"\""), K_HS},
	{"sid empty, canonical form", H, P_SID("\"\""), K_HS},
	{"dup sid", H, P_(",\"sid\":\"" SID "\",\"sid\":\"" JTI "\""), K_HS},
	{"other key", H, P, K_OTHER},
	{"no signature", H, P, K_NOSIG},
	{"exp missing", H,
	 "{\"token_type\":\"access\",\"iat\":{NOW},\"jti\":\"" JTI "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"exp string", H,
	 "{\"token_type\":\"access\",\"exp\":\"{EXP}\",\"iat\":{NOW},\"jti\":\"" JTI
	 "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"exp float", H,
	 "{\"token_type\":\"access\",\"exp\":{EXP}.5,\"iat\":{NOW},\"jti\":\"" JTI
	 "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"exp bool", H,
	 "{\"token_type\":\"access\",\"exp\":true,\"iat\":{NOW},\"jti\":\"" JTI
	 "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"exp null", H,
	 "{\"token_type\":\"access\",\"exp\":null,\"iat\":{NOW},\"jti\":\"" JTI
	 "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"exp past", H,
	 "{\"token_type\":\"access\",\"exp\":{PAST},\"iat\":{NOW},\"jti\":\"" JTI
	 "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"exp zero", H,
	 "{\"token_type\":\"access\",\"exp\":0,\"iat\":{NOW},\"jti\":\"" JTI "\",\"user_id\":\"" UID
	 "\"}",
	 K_HS},
	{"nbf future", H, P_(",\"nbf\":{FUT}"), K_HS},
	{"iat future", H,
	 "{\"token_type\":\"access\",\"exp\":{EXP},\"iat\":{FUT},\"jti\":\"" JTI
	 "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"token_type missing", H,
	 "{\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI "\",\"user_id\":\"" UID "\"}", K_HS},
	{"token_type unknown", H,
	 "{\"token_type\":\"id\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI "\",\"user_id\":\"" UID
	 "\"}",
	 K_HS},
	{"token_type case", H,
	 "{\"token_type\":\"Access\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI
	 "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"token_type number", H,
	 "{\"token_type\":1,\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI "\",\"user_id\":\"" UID
	 "\"}",
	 K_HS},
	{"api without team", H,
	 "{\"token_type\":\"api\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI
	 "\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"jti not uuid", H,
	 "{\"token_type\":\"access\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"abc\",\"user_id\":\"" UID
	 "\"}",
	 K_HS},
	{"jti uppercase", H,
	 "{\"token_type\":\"access\",\"exp\":{EXP},\"iat\":{NOW},"
	 "\"jti\":\"123E4567-E89B-42D3-A456-426614174000\",\"user_id\":\"" UID "\"}",
	 K_HS},
	{"jti missing", H,
	 "{\"token_type\":\"access\",\"exp\":{EXP},\"iat\":{NOW},\"user_id\":\"" UID "\"}", K_HS},
	{"jti number", H,
	 "{\"token_type\":\"access\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":7,\"user_id\":\"" UID
	 "\"}",
	 K_HS},
	{"user_id not uuid", H,
	 "{\"token_type\":\"access\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI
	 "\",\"user_id\":\"alice\"}",
	 K_HS},
	{"user_id missing", H,
	 "{\"token_type\":\"access\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI "\"}", K_HS},
};

START_TEST(check_control_accepted)
{
	struct jwtsign_token out;
	char *tok = craft(H, P, K_HS);

	memset(&out, 0x5a, sizeof out);
	ck_assert_int_eq(check(tok, &out), 0);
	ck_assert_str_eq(out.kid, hs_kid);
	ck_assert_str_eq(out.token_type, "access");
	ck_assert_str_eq(out.jti, JTI);
	ck_assert_str_eq(out.user_id, UID);
	ck_assert_str_eq(out.team_uuid, "");
	ck_assert_int_eq(out.iat, t_now);
	ck_assert_int_eq(out.exp, t_now + 300);
	free(tok);

	/* key order, whitespace, extra claims, a past nbf: fine */
	tok = craft(
		"{ \"kid\" : \"{KID}\", \"typ\":\"JWT\", \"alg\":\"HS256\" }",
		"{\"user_id\":\"" UID "\", \"jti\":\"" JTI "\",\"nbf\":{PAST},"
		"\"x\":[1,{\"y\":null}],\"iat\":{NOW},\"exp\":{EXP},\"token_type\":\"refresh\"}",
		K_HS);
	ck_assert_int_eq(check(tok, &out), 0);
	ck_assert_str_eq(out.token_type, "refresh");
	free(tok);

	/* an API token carries its team */
	tok = craft(H, P_(",\"team_uuid\":\"" TEAM "\""), K_HS);
	ck_assert_int_eq(check(tok, &out), 0); /* access token: team ignored or kept */
	free(tok);
	tok = craft(H,
		    "{\"token_type\":\"api\",\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI
		    "\",\"user_id\":\"" UID "\",\"team_uuid\":\"" TEAM "\"}",
		    K_HS);
	ck_assert_int_eq(check(tok, &out), 0);
	ck_assert_str_eq(out.token_type, "api");
	ck_assert_str_eq(out.team_uuid, TEAM);
	free(tok);
}
END_TEST

/* The payload of token tok, NUL-terminated, into out. */
static void payload_of(const char *tok, char *out, size_t cap)
{
	const char *p = strchr(tok, '.') + 1;
	const char *q = strchr(p, '.');
	size_t n = 0;

	ck_assert_int_eq(util_b64url_decode(p, (size_t)(q - p), (unsigned char *)out, cap - 1, &n),
			 0);
	out[n] = '\0';
}

/* sid: minted in its sorted place, read back by both paths, optional. */
START_TEST(check_sid)
{
	struct jwtsign_claims c = {"access", JTI, UID, NULL, 0, 0, NULL, NULL, NULL, NULL};
	struct jwtsign_token out;
	char payload[1024], want[1024];
	char *tok = NULL;

	c.iat = t_now;
	c.exp = t_now + 300;
	c.sid = SID;
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	payload_of(tok, payload, sizeof payload);
	snprintf(want, sizeof want,
		 "{\"exp\":%lld,\"iat\":%lld,\"jti\":\"" JTI "\",\"sid\":\"" SID
		 "\",\"token_type\":\"access\",\"user_id\":\"" UID "\"}",
		 (long long)c.exp, (long long)c.iat);
	ck_assert_str_eq(payload, want);
	memset(&out, 0x5a, sizeof out);
	ck_assert_int_eq(check(tok, &out), 0); /* the fast path */
	ck_assert_str_eq(out.sid, SID);
	ck_assert_str_eq(out.jti, JTI);
	free(tok);

	tok = craft(H, P_SID("\"" SID "\""), K_HS);
	ck_assert_int_eq(check(tok, &out), 0);
	ck_assert_str_eq(out.sid, SID);
	free(tok);

	/* the full path: another key order, spaces */
	tok = craft(H,
		    "{\"sid\": \"" SID "\", "
		    "\"token_type\":\"refresh\",\"exp\":{EXP},"
		    "\"iat\":{NOW},\"jti\":\"" JTI "\",\"user_id\":\"" UID "\"}",
		    K_HS);
	ck_assert_int_eq(check(tok, &out), 0);
	ck_assert_str_eq(out.sid, SID);
	ck_assert_str_eq(out.token_type, "refresh");
	free(tok);

	/* without one (minted before sessions): accepted, sid "" */
	memset(&out, 0x5a, sizeof out);
	tok = craft(H, P, K_HS);
	ck_assert_int_eq(check(tok, &out), 0);
	ck_assert_str_eq(out.sid, "");
	free(tok);

	/* an API token belongs to no session, whatever it says */
	tok = craft(H,
		    "{\"exp\":{EXP},\"iat\":{NOW},\"jti\":\"" JTI "\",\"sid\":\"" SID
		    "\",\"team_uuid\":\"" TEAM "\",\"token_type\":\"api\",\"user_id\":\"" UID "\"}",
		    K_HS);
	ck_assert_int_eq(check(tok, &out), 0);
	ck_assert_str_eq(out.sid, "");
	ck_assert_str_eq(out.team_uuid, TEAM);
	free(tok);

	/* with iss/aud configured (the full path always) */
	c.issuer = "https://auth.example";
	c.audience = "api";
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	ck_assert_int_eq(check(tok, &out), 0);
	ck_assert_str_eq(out.sid, SID);
	free(tok);
}
END_TEST

START_TEST(check_rejects)
{
	const struct bad_case *c = &bad_cases[_i];
	char *tok = craft(c->hdr, c->payload, c->mode);
	struct jwtsign_token out;

	ck_assert_msg(check(tok, &out) == TOKEND_EAUTH, "accepted: %s (%s)", c->name, tok);
	free(tok);
}
END_TEST

/* The genuine parts of a good token, for malformed variants. */
static void good_segs(char *hs, size_t hcap, char *ps, size_t pcap, const char *ptmpl)
{
	char hj[512], pj[4096];

	subst(H, hj, sizeof hj);
	subst(ptmpl, pj, sizeof pj);
	b64(hj, strlen(hj), hs, hcap);
	b64(pj, strlen(pj), ps, pcap);
}

static void expect_bad(const char *tok, const char *what)
{
	ck_assert_msg(check(tok, NULL) == TOKEND_EAUTH, "accepted: %s", what);
}

START_TEST(check_rejects_malformed)
{
	char hs[512], ps[4096], buf[8192];
	char *tok, *dot;

	good_segs(hs, sizeof hs, ps, sizeof ps, P);
	tok = sign_segs(hs, ps, hs_key, hs_keylen);
	ck_assert_int_eq(check(tok, NULL), 0);

	/* two and four parts, empty parts */
	dot = strrchr(tok, '.');
	snprintf(buf, sizeof buf, "%.*s", (int)(dot - tok), tok);
	expect_bad(buf, "two parts");
	snprintf(buf, sizeof buf, "%s.%s", tok, dot + 1);
	expect_bad(buf, "four parts");
	snprintf(buf, sizeof buf, "%s.", tok);
	expect_bad(buf, "trailing dot");
	snprintf(buf, sizeof buf, ".%s", tok);
	expect_bad(buf, "leading dot");
	expect_bad("", "empty");
	expect_bad(".", "one dot");
	expect_bad("..", "two dots");
	expect_bad("...", "three dots");
	expect_bad("abc", "one part");
	/* signature padded / wrong alphabet / truncated / doubled */
	snprintf(buf, sizeof buf, "%s=", tok);
	expect_bad(buf, "signature with '='");
	snprintf(buf, sizeof buf, "%.*s", (int)strlen(tok) - 1, tok);
	expect_bad(buf, "signature truncated");
	snprintf(buf, sizeof buf, "%s%s", tok, dot + 1);
	expect_bad(buf, "signature doubled");
	snprintf(buf, sizeof buf, "%s ", tok);
	expect_bad(buf, "trailing space");
	snprintf(buf, sizeof buf, " %s", tok);
	expect_bad(buf, "leading space");
	free(tok);

	/* padded header / payload, signed over the literal bytes */
	snprintf(buf, sizeof buf, "%s=", hs);
	tok = sign_segs(buf, ps, hs_key, hs_keylen);
	expect_bad(tok, "header with '='");
	free(tok);
	snprintf(buf, sizeof buf, "%s==", ps);
	tok = sign_segs(hs, buf, hs_key, hs_keylen);
	expect_bad(tok, "payload with '=='");
	free(tok);
	/* a space, a newline, a '*' inside the payload */
	snprintf(buf, sizeof buf, "%.8s %s", ps, ps + 8);
	tok = sign_segs(hs, buf, hs_key, hs_keylen);
	expect_bad(tok, "space in payload");
	free(tok);
	snprintf(buf, sizeof buf, "%.8s\n%s", ps, ps + 8);
	tok = sign_segs(hs, buf, hs_key, hs_keylen);
	expect_bad(tok, "newline in payload");
	free(tok);
	snprintf(buf, sizeof buf, "%.8s*%s", ps, ps + 8);
	tok = sign_segs(hs, buf, hs_key, hs_keylen);
	expect_bad(tok, "'*' in payload");
	free(tok);
	/* an impossible base64 length (4k+1) */
	snprintf(buf, sizeof buf, "%s", ps);
	while (strlen(buf) % 4 != 1)
		strcat(buf, "A");
	tok = sign_segs(hs, buf, hs_key, hs_keylen);
	expect_bad(tok, "payload of length 4k+1");
	free(tok);
}
END_TEST

START_TEST(check_rejects_std_alphabet)
{
	/* "~~~" and "???" encode with '-' and '_' in base64url: '+' and '/' in std */
	char hs[512], ps[4096];
	char *tok;
	bool changed = false;

	good_segs(hs, sizeof hs, ps, sizeof ps, P_(",\"n\":\"~~~?\?\?>>>~?~\""));
	tok = sign_segs(hs, ps, hs_key, hs_keylen);
	ck_assert_int_eq(check(tok, NULL), 0);
	free(tok);
	for (char *c = ps; *c; c++) {
		if (*c == '-') {
			*c = '+';
			changed = true;
		} else if (*c == '_') {
			*c = '/';
			changed = true;
		}
	}
	ck_assert(changed);
	tok = sign_segs(hs, ps, hs_key, hs_keylen);
	expect_bad(tok, "'+' / '/' in payload");
	free(tok);
}
END_TEST

/* A signed token of exactly size bytes (a pad claim; spaces in the header). */
static char *sized_token(size_t size)
{
	size_t n = size > 400 ? (size - 400) * 3 / 4 : 0;

	for (int sp = 0; sp < 4; sp++) {
		for (size_t extra = n > 8 ? n - 8 : 0; extra < n + 300; extra++) {
			char hj[512], hs[1024], *pj, *ps, *tok;
			size_t pl;

			snprintf(hj, sizeof hj,
				 "{%*s\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", sp, "",
				 hs_kid);
			b64(hj, strlen(hj), hs, sizeof hs);
			pl = extra + 256;
			pj = malloc(pl);
			ps = malloc(pl * 2);
			ck_assert(pj && ps);
			snprintf(
				pj, pl,
				"{\"token_type\":\"access\",\"exp\":%lld,\"iat\":%lld,\"jti\":\"" JTI
				"\",\"user_id\":\"" UID "\",\"pad\":\"%0*d\"}",
				(long long)t_now + 300, (long long)t_now, (int)extra, 0);
			b64(pj, strlen(pj), ps, pl * 2);
			tok = sign_segs(hs, ps, hs_key, hs_keylen);
			free(pj);
			free(ps);
			if (strlen(tok) == size)
				return tok;
			if (strlen(tok) > size) {
				free(tok);
				break;
			}
			free(tok);
		}
	}
	ck_abort_msg("no token of %zu bytes", size);
	return NULL;
}

START_TEST(check_size_limit)
{
	char *tok = sized_token(JWTSIGN_MAX_TOKEN);
	char *big;
	const size_t huge = 9u << 20;

	ck_assert_int_eq(check(tok, NULL), 0);
	free(tok);
	tok = sized_token(JWTSIGN_MAX_TOKEN + 1);
	expect_bad(tok, "8 KiB + 1");
	free(tok);
	tok = sized_token(60 * 1024);
	expect_bad(tok, "60 KiB");
	free(tok);

	/* 9 MB: refused before any decoding (libjwt would crash) */
	big = malloc(huge + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, 'A', huge);
	memcpy(big, "eyJhbGciOiJIUzI1NiJ9.", 21);
	big[huge / 2] = '.';
	big[huge] = '\0';
	expect_bad(big, "9 MB");
	free(big);
}
END_TEST

START_TEST(check_len_is_honoured)
{
	char *tok = craft(H, P, K_HS);
	struct jwtsign_token out;
	const char *reason = NULL;
	struct jwtsign_policy pol = {.now = t_now};
	size_t n = strlen(tok);
	char *padded = malloc(n + 8);

	ck_assert_int_eq(jwtsign_check(keys, tok, n, &pol, &out, &reason), 0);
	ck_assert_int_eq(jwtsign_check(keys, tok, n - 1, &pol, &out, &reason), TOKEND_EAUTH);
	/* the token, then junk after len: only len bytes count */
	memcpy(padded, tok, n);
	memcpy(padded + n, "XYZ", 4);
	ck_assert_int_eq(jwtsign_check(keys, padded, n, &pol, &out, &reason), 0);
	ck_assert_int_eq(jwtsign_check(keys, padded, n + 3, &pol, &out, &reason), TOKEND_EAUTH);
	free(padded);
	free(tok);
}
END_TEST

START_TEST(check_leeway)
{
	struct jwtsign_policy p0 = {.now = t_now, .leeway = 0};
	struct jwtsign_policy p30 = {.now = t_now, .leeway = 30};
	char pj[512];
	char *tok;

	/* expired 10 s ago */
	snprintf(pj, sizeof pj,
		 "{\"token_type\":\"access\",\"exp\":%lld,\"iat\":%lld,\"jti\":\"" JTI
		 "\",\"user_id\":\"" UID "\"}",
		 (long long)t_now - 10, (long long)t_now - 310);
	tok = craft(H, pj, K_HS);
	ck_assert_int_eq(check_pol(tok, &p30, NULL), 0);
	ck_assert_int_eq(check_pol(tok, &p0, NULL), TOKEND_EAUTH);
	free(tok);
	/* expired 60 s ago */
	snprintf(pj, sizeof pj,
		 "{\"token_type\":\"access\",\"exp\":%lld,\"iat\":%lld,\"jti\":\"" JTI
		 "\",\"user_id\":\"" UID "\"}",
		 (long long)t_now - 60, (long long)t_now - 360);
	tok = craft(H, pj, K_HS);
	ck_assert_int_eq(check_pol(tok, &p30, NULL), TOKEND_EAUTH);
	free(tok);
	/* iat 10 s / 60 s ahead */
	snprintf(pj, sizeof pj,
		 "{\"token_type\":\"access\",\"exp\":%lld,\"iat\":%lld,\"jti\":\"" JTI
		 "\",\"user_id\":\"" UID "\"}",
		 (long long)t_now + 300, (long long)t_now + 10);
	tok = craft(H, pj, K_HS);
	ck_assert_int_eq(check_pol(tok, &p30, NULL), 0);
	ck_assert_int_eq(check_pol(tok, &p0, NULL), TOKEND_EAUTH);
	free(tok);
	snprintf(pj, sizeof pj,
		 "{\"token_type\":\"access\",\"exp\":%lld,\"iat\":%lld,\"jti\":\"" JTI
		 "\",\"user_id\":\"" UID "\"}",
		 (long long)t_now + 300, (long long)t_now + 60);
	tok = craft(H, pj, K_HS);
	ck_assert_int_eq(check_pol(tok, &p30, NULL), TOKEND_EAUTH);
	free(tok);
	/* nbf 10 s ahead */
	snprintf(pj, sizeof pj,
		 "{\"token_type\":\"access\",\"exp\":%lld,\"iat\":%lld,\"nbf\":%lld,\"jti\":\"" JTI
		 "\",\"user_id\":\"" UID "\"}",
		 (long long)t_now + 300, (long long)t_now, (long long)t_now + 10);
	tok = craft(H, pj, K_HS);
	ck_assert_int_eq(check_pol(tok, &p30, NULL), 0);
	ck_assert_int_eq(check_pol(tok, &p0, NULL), TOKEND_EAUTH);
	free(tok);
}
END_TEST

START_TEST(check_iss_aud)
{
	struct jwtsign_policy pol = {.now = t_now,
				     .issuer = "https://auth.example",
				     .audience = "api"};
	struct jwtsign_claims c = {"access", JTI, UID, NULL, 0, 0, NULL, NULL, NULL, NULL};
	char *tok = NULL;

	c.iat = t_now;
	c.exp = t_now + 300;
	/* minted without iss/aud: refused by a policy that wants them */
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	ck_assert_int_eq(check_pol(tok, &pol, NULL), TOKEND_EAUTH);
	ck_assert_int_eq(check(tok, NULL), 0);
	free(tok);
	tok = NULL;

	c.issuer = pol.issuer;
	c.audience = pol.audience;
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	ck_assert_int_eq(check_pol(tok, &pol, NULL), 0);
	free(tok);
	/* iss and aud as JSON strings: escaped as jansson writes them */
	c.issuer = "a\"b\\c\n\x01\xc3\xa9"; /* a"b\c, LF, SOH, e-acute */
	c.audience = "";
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	{
		struct jwtsign_policy esc = {.now = t_now, .issuer = c.issuer};
		ck_assert_int_eq(check_pol(tok, &esc, NULL), 0);
	}
	free(tok);
	c.issuer = "\xff"; /* not UTF-8: no JSON string */
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), TOKEND_EINVAL);
	ck_assert_ptr_null(tok);
	free(tok);

	tok = craft(H, P_(",\"iss\":\"https://auth.example\",\"aud\":[\"x\",\"api\"]"), K_HS);
	ck_assert_int_eq(check_pol(tok, &pol, NULL), 0);
	free(tok);
	tok = craft(H, P_(",\"iss\":\"https://evil.example\",\"aud\":\"api\""), K_HS);
	ck_assert_int_eq(check_pol(tok, &pol, NULL), TOKEND_EAUTH);
	free(tok);
	tok = craft(H, P_(",\"iss\":\"https://auth.example\",\"aud\":\"other\""), K_HS);
	ck_assert_int_eq(check_pol(tok, &pol, NULL), TOKEND_EAUTH);
	free(tok);
	tok = craft(H, P_(",\"aud\":\"api\""), K_HS);
	ck_assert_int_eq(check_pol(tok, &pol, NULL), TOKEND_EAUTH);
	free(tok);
	tok = craft(H, P_(",\"iss\":\"https://auth.example\""), K_HS);
	ck_assert_int_eq(check_pol(tok, &pol, NULL), TOKEND_EAUTH);
	free(tok);
	tok = craft(H, P_(",\"iss\":\"https://auth.example\",\"aud\":[]"), K_HS);
	ck_assert_int_eq(check_pol(tok, &pol, NULL), TOKEND_EAUTH);
	free(tok);
}
END_TEST

/* ---- minting with each key ---------------------------------------------- */

static char *header_kid_alg(const char *tok, char *alg, size_t algcap)
{
	unsigned char buf[1024];
	size_t n = 0;
	const char *dot = strchr(tok, '.');
	json_t *h;
	static char kid[64];

	ck_assert_ptr_nonnull(dot);
	ck_assert_int_eq(util_b64url_decode(tok, (size_t)(dot - tok), buf, sizeof buf, &n), 0);
	h = json_loadb((const char *)buf, n, 0, NULL);
	ck_assert_ptr_nonnull(h);
	snprintf(kid, sizeof kid, "%s", json_string_value(json_object_get(h, "kid")));
	snprintf(alg, algcap, "%s", json_string_value(json_object_get(h, "alg")));
	json_decref(h);
	return kid;
}

START_TEST(mint_with_each_kid)
{
	struct jwtsign_claims c = {"refresh", JTI, UID, NULL, 0, 0, NULL, NULL, NULL, NULL};
	const char *kids[] = {hs_kid, rs_kid, es_kid, NULL};
	const char *algs[] = {"HS256", "RS256", "ES256"};
	struct jwtsign_token out;

	c.iat = t_now;
	c.exp = t_now + 300;
	for (int i = 0; kids[i]; i++) {
		char *a = NULL, *b = NULL, alg[16];

		c.kid = kids[i];
		ck_assert_int_eq(jwtsign_mint(keys, &c, &a), 0);
		ck_assert_str_eq(header_kid_alg(a, alg, sizeof alg), kids[i]);
		ck_assert_str_eq(alg, algs[i]);
		ck_assert_int_eq(check(a, &out), 0);
		ck_assert_str_eq(out.kid, kids[i]);
		ck_assert_str_eq(out.jti, JTI);
		ck_assert_int_eq(jwtsign_mint(keys, &c, &b), 0);
		ck_assert_int_eq(check(b, NULL), 0);
		if (i < 2) /* HS256 and RS256 are deterministic */
			ck_assert_str_eq(a, b);
		/* junk appended to an asymmetric signature is not the same token */
		{
			size_t n = strlen(a);
			char *junk = malloc(n + 8);
			snprintf(junk, n + 8, "%sAAAA", a);
			expect_bad(junk, "signature + junk");
			snprintf(junk, n + 8, "%sA", a);
			expect_bad(junk, "signature + 1 char");
			free(junk);
		}
		free(a);
		free(b);
	}
	/* NULL kid = the current key */
	c.kid = NULL;
	{
		char *a = NULL, alg[16];
		ck_assert_int_eq(jwtsign_mint(keys, &c, &a), 0);
		ck_assert_str_eq(header_kid_alg(a, alg, sizeof alg), hs_kid);
		free(a);
	}
	/* unknown kid */
	{
		char *a = NULL;
		c.kid = "ffffffffffffffff";
		ck_assert_int_eq(jwtsign_mint(keys, &c, &a), TOKEND_ENOTFOUND);
		ck_assert_ptr_null(a);
	}
}
END_TEST

START_TEST(jwks_has_no_hs_keys)
{
	char *doc = jwtsign_jwks(keys);
	json_t *j, *arr, *k;
	size_t i;
	int seen_rs = 0, seen_es = 0;

	ck_assert_ptr_nonnull(doc);
	j = json_loads(doc, JSON_REJECT_DUPLICATES, NULL);
	ck_assert_ptr_nonnull(j);
	arr = json_object_get(j, "keys");
	ck_assert(json_is_array(arr));
	ck_assert_uint_eq(json_array_size(arr), 2);
	json_array_foreach(arr, i, k) {
		const char *kid = json_string_value(json_object_get(k, "kid"));
		const char *alg = json_string_value(json_object_get(k, "alg"));
		const char *kty = json_string_value(json_object_get(k, "kty"));

		ck_assert_ptr_nonnull(kid);
		ck_assert_ptr_nonnull(alg);
		ck_assert_ptr_nonnull(kty);
		ck_assert_str_eq(json_string_value(json_object_get(k, "use")), "sig");
		ck_assert_ptr_null(json_object_get(k, "d"));
		ck_assert_ptr_null(json_object_get(k, "k"));
		ck_assert_str_ne(kid, hs_kid);
		if (strcmp(alg, "RS256") == 0) {
			ck_assert_str_eq(kid, rs_kid);
			ck_assert_str_eq(kty, "RSA");
			ck_assert(json_is_string(json_object_get(k, "n")));
			ck_assert_str_eq(json_string_value(json_object_get(k, "e")), "AQAB");
			seen_rs++;
		} else {
			ck_assert_str_eq(alg, "ES256");
			ck_assert_str_eq(kid, es_kid);
			ck_assert_str_eq(kty, "EC");
			ck_assert_str_eq(json_string_value(json_object_get(k, "crv")), "P-256");
			ck_assert(json_is_string(json_object_get(k, "x")));
			ck_assert(json_is_string(json_object_get(k, "y")));
			seen_es++;
		}
	}
	ck_assert_int_eq(seen_rs, 1);
	ck_assert_int_eq(seen_es, 1);
	json_decref(j);
	free(doc);
}
END_TEST

START_TEST(jwks_empty_for_hs_only)
{
	struct jwtsign_keys *k = NULL;
	char err[256];
	char *doc;
	json_t *j;

	snprintf(keydir, sizeof keydir, "%s/hsonly", tmpdir);
	ck_assert_int_eq(jwtsign_keys_load(keydir, "HS256", 1, &k, err, sizeof err), 0);
	doc = jwtsign_jwks(k);
	ck_assert_ptr_nonnull(doc);
	j = json_loads(doc, 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert(json_is_array(json_object_get(j, "keys")));
	ck_assert_uint_eq(json_array_size(json_object_get(j, "keys")), 0);
	json_decref(j);
	free(doc);
	jwtsign_keys_free(&k);
}
END_TEST

/* ---- rotate / retire / reload ------------------------------------------- */

START_TEST(list_shows_keys_and_current)
{
	struct jwtsign_key_info info[8];
	size_t n = jwtsign_keys_list(keys, info, 8);
	int current = 0, found = 0;

	ck_assert_uint_eq(n, 3);
	for (size_t i = 0; i < n; i++) {
		if (info[i].current) {
			current++;
			ck_assert_str_eq(info[i].kid, hs_kid);
		}
		if (strcmp(info[i].kid, rs_kid) == 0 && strcmp(info[i].alg, "RS256") == 0)
			found++;
		if (strcmp(info[i].kid, es_kid) == 0 && strcmp(info[i].alg, "ES256") == 0)
			found++;
		ck_assert_int_gt(info[i].created, 0);
	}
	ck_assert_int_eq(current, 1);
	ck_assert_int_eq(found, 2);
	ck_assert_uint_eq(jwtsign_keys_list(keys, info, 1), 1);
}
END_TEST

START_TEST(retire_rules)
{
	char err[256] = "", p[512];
	struct stat sb;

	ck_assert_int_eq(jwtsign_key_retire(keydir, hs_kid, err, sizeof err), TOKEND_ECONFLICT);
	key_path(p, sizeof p, hs_kid, "HS256");
	ck_assert_int_eq(stat(p, &sb), 0);
	ck_assert_int_eq(jwtsign_key_retire(keydir, "0123456789abcdef", err, sizeof err),
			 TOKEND_ENOTFOUND);
	ck_assert_int_eq(jwtsign_key_retire(keydir, rs_kid, err, sizeof err), 0);
	key_path(p, sizeof p, rs_kid, "RS256");
	ck_assert_int_ne(stat(p, &sb), 0);
	ck_assert_int_eq(jwtsign_key_retire(keydir, rs_kid, err, sizeof err), TOKEND_ENOTFOUND);
}
END_TEST

START_TEST(rotate_bad_alg)
{
	char kid[JWTSIGN_KID_LEN + 1] = "", err[256] = "";

	ck_assert_int_eq(jwtsign_key_rotate(keydir, "none", kid, err, sizeof err), TOKEND_EINVAL);
	ck_assert_int_eq(jwtsign_key_rotate(keydir, "HS512", kid, err, sizeof err), TOKEND_EINVAL);
}
END_TEST

START_TEST(reload_picks_up_rotation_and_retirement)
{
	struct jwtsign_claims c = {"access", JTI, UID, NULL, 0, 0, NULL, NULL, NULL, NULL};
	char newkid[JWTSIGN_KID_LEN + 1], signing[JWTSIGN_KID_LEN + 1], err[256] = "";
	char *old_tok = NULL, *new_tok = NULL, alg[16];

	c.iat = t_now;
	c.exp = t_now + 300;
	ck_assert_int_eq(jwtsign_mint(keys, &c, &old_tok), 0);

	rot("ES256", newkid);
	ck_assert_str_eq(jwtsign_current_kid(keys), hs_kid); /* not before a reload */
	ck_assert_int_eq(jwtsign_keys_reload(keys, err, sizeof err), 0);
	ck_assert_str_eq(jwtsign_current_kid(keys), newkid);
	jwtsign_signing_kid(keys, signing);
	ck_assert_str_eq(signing, newkid);
	ck_assert_int_eq(jwtsign_mint(keys, &c, &new_tok), 0);
	ck_assert_str_eq(header_kid_alg(new_tok, alg, sizeof alg), newkid);
	ck_assert_str_eq(alg, "ES256");
	ck_assert_int_eq(check(new_tok, NULL), 0);
	ck_assert_int_eq(check(old_tok, NULL), 0); /* older keys keep verifying */

	/* retire the old key: after a reload its tokens fail */
	ck_assert_int_eq(jwtsign_key_retire(keydir, hs_kid, err, sizeof err), 0);
	ck_assert_int_eq(check(old_tok, NULL), 0); /* still loaded */
	ck_assert_int_eq(jwtsign_keys_reload(keys, err, sizeof err), 0);
	ck_assert_int_eq(check(old_tok, NULL), TOKEND_EAUTH);
	ck_assert_int_eq(check(new_tok, NULL), 0);
	free(old_tok);
	free(new_tok);
}
END_TEST

/*
 * The same kid with a new secret (the file rewritten, then a reload): this
 * thread's kept HMAC context of the old secret is not used for the new one.
 */
START_TEST(reload_new_secret_same_kid)
{
	static const char secret[] =
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\n";
	struct jwtsign_claims c = {"access", JTI, UID, NULL, 0, 0, NULL, NULL, NULL, NULL};
	char p[512], err[256] = "";
	char *old_tok = NULL, *new_tok = NULL;
	FILE *f;

	c.iat = t_now;
	c.exp = t_now + 300;
	ck_assert_int_eq(jwtsign_mint(keys, &c, &old_tok), 0);
	ck_assert_int_eq(check(old_tok, NULL), 0); /* the thread keeps this key's context */
	key_path(p, sizeof p, hs_kid, "HS256");
	f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs(secret, f);
	fclose(f);
	ck_assert_int_eq(jwtsign_keys_reload(keys, err, sizeof err), 0);
	ck_assert_str_eq(jwtsign_current_kid(keys), hs_kid);
	ck_assert_int_eq(check(old_tok, NULL), TOKEND_EAUTH);
	ck_assert_int_eq(jwtsign_mint(keys, &c, &new_tok), 0);
	ck_assert_str_ne(old_tok, new_tok);
	ck_assert_int_eq(check(new_tok, NULL), 0);
	free(old_tok);
	free(new_tok);
}
END_TEST

START_TEST(reload_failure_keeps_old_set)
{
	char p[512], err[256] = "";
	FILE *f;
	char *tok = NULL;
	struct jwtsign_claims c = {"access", JTI, UID, NULL, 0, 0, NULL, NULL, NULL, NULL};

	c.iat = t_now;
	c.exp = t_now + 300;
	snprintf(p, sizeof p, "%s/0123456789abcdef.HS256.key", keydir);
	f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs("short\n", f);
	fclose(f);
	chmod(p, 0600);
	ck_assert_int_ne(jwtsign_keys_reload(keys, err, sizeof err), 0);
	ck_assert_uint_gt(strlen(err), 0);
	ck_assert_str_eq(jwtsign_current_kid(keys), hs_kid);
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	ck_assert_int_eq(check(tok, NULL), 0);
	free(tok);
}
END_TEST

static Suite *jwtsign_check_suite(void)
{
	Suite *s = suite_create("jwtsign_check");
	TCase *tc = tcase_create("check");
	tcase_add_checked_fixture(tc, jwt_setup, jwt_teardown);
	tcase_add_test(tc, check_control_accepted);
	tcase_add_loop_test(tc, check_rejects, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
	tcase_add_test(tc, check_rejects_malformed);
	tcase_add_test(tc, check_rejects_std_alphabet);
	tcase_add_test(tc, check_size_limit);
	tcase_add_test(tc, check_len_is_honoured);
	tcase_add_test(tc, check_leeway);
	tcase_add_test(tc, check_iss_aud);
	tcase_add_test(tc, check_sid);
	suite_add_tcase(s, tc);

	tc = tcase_create("keys");
	tcase_add_checked_fixture(tc, jwt_setup, jwt_teardown);
	tcase_add_test(tc, mint_with_each_kid);
	tcase_add_test(tc, jwks_has_no_hs_keys);
	tcase_add_test(tc, jwks_empty_for_hs_only);
	tcase_add_test(tc, list_shows_keys_and_current);
	tcase_add_test(tc, retire_rules);
	tcase_add_test(tc, rotate_bad_alg);
	tcase_add_test(tc, reload_picks_up_rotation_and_retirement);
	tcase_add_test(tc, reload_new_secret_same_kid);
	tcase_add_test(tc, reload_failure_keeps_old_set);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return UNIT_MAIN(jwtsign_check_suite(), "jwtsign-check", base, make_template);
}
