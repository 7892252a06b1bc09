/* SPDX-License-Identifier: MIT */
/*
 * This suite tests include/tokend/jwtsign.h: the key directory (created 0700
 * with one 0600 key file of 64 random bytes as base64url), the refusal of
 * short keys, unsafe permissions and unknown algorithms, and minted tokens,
 * whose signature is recomputed here with OpenSSL's HMAC(). The "check"
 * case signs tokens here with the right key, so that only the header
 * member under test (crit, RFC 7515 4.1.11) can make them fail.
 */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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

static void teardown(void)
{
	rm_rf(tmpdir);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(keydir, sizeof keydir, "%s/keys", tmpdir);
}

/* Lists the entries of dir (not . and ..) into names; returns how many. */
static int list_dir(const char *dir, char names[][256], int max)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		/* Key files only: "current" names the signing kid beside them. */
		if (strstr(de->d_name, ".key") == NULL)
			continue;
		if (n < max)
			snprintf(names[n], 256, "%s", de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static bool is_key_name(const char *name)
{
	for (int i = 0; i < JWTSIGN_KID_LEN; i++)
		if (!isxdigit((unsigned char)name[i]))
			return false;
	return strcmp(name + JWTSIGN_KID_LEN, ".HS256.key") == 0;
}

/* Reads a whole small file into buf (NUL-terminated); returns its length. */
static size_t read_file(const char *p, char *buf, size_t cap)
{
	FILE *f = fopen(p, "rb");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	fclose(f);
	return n;
}

/* Decodes the key file at p into key (64 bytes expected). */
static size_t key_of_file(const char *p, unsigned char *key, size_t cap)
{
	char text[1024];
	size_t n = read_file(p, text, sizeof text), keylen = 0;

	if (n > 0 && text[n - 1] == '\n')
		text[--n] = '\0';
	ck_assert_msg(strchr(text, '\n') == NULL && strchr(text, '\r') == NULL,
		      "key file is not one line");
	ck_assert_int_eq(util_b64url_decode(text, n, key, cap, &keylen), 0);
	return keylen;
}

static void write_key(const char *kid, const unsigned char *key, size_t len, mode_t mode)
{
	char p[256], text[256];
	size_t n = util_b64url_encode(key, len, text, sizeof text);
	int fd;

	ck_assert_uint_gt(n, 0);
	mkdir(keydir, 0700);
	snprintf(p, sizeof p, "%s/%s.HS256.key", keydir, kid);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	text[n++] = '\n';
	ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
	ck_assert_int_eq(chmod(p, mode), 0);
}

static int load(int create, struct jwtsign_keys **keys)
{
	char err[256] = "";
	int rc;

	*keys = NULL;
	rc = jwtsign_keys_load(keydir, "HS256", create, keys, err, sizeof err);
	if (rc != 0)
		ck_assert_msg(err[0] != '\0', "error %d without a message", rc);
	return rc;
}

/* ---- keys --------------------------------------------------------------- */

START_TEST(create_key_dir)
{
	struct jwtsign_keys *keys = NULL;
	char names[4][256], p[512];
	struct stat st;
	unsigned char key[128];
	const char *kid;

	ck_assert_int_eq(load(1, &keys), 0);
	ck_assert_ptr_nonnull(keys);
	ck_assert_int_eq(stat(keydir, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0700);

	ck_assert_int_eq(list_dir(keydir, names, 4), 1);
	ck_assert_msg(is_key_name(names[0]), "key file %s", names[0]);
	snprintf(p, sizeof p, "%s/%s", keydir, names[0]);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_uint_eq(key_of_file(p, key, sizeof key), JWTSIGN_HS_KEY_BYTES);

	kid = jwtsign_current_kid(keys);
	ck_assert_ptr_nonnull(kid);
	ck_assert_uint_eq(strlen(kid), JWTSIGN_KID_LEN);
	ck_assert_int_eq(strncmp(kid, names[0], JWTSIGN_KID_LEN), 0);
	jwtsign_keys_free(&keys);
	ck_assert_ptr_null(keys);
}
END_TEST

START_TEST(reload_same_kid)
{
	struct jwtsign_keys *a = NULL, *b = NULL, *c = NULL;
	char names[4][256];

	ck_assert_int_eq(load(1, &a), 0);
	ck_assert_int_eq(load(0, &b), 0);
	ck_assert_str_eq(jwtsign_current_kid(a), jwtsign_current_kid(b));
	/* create=1 with a key present makes no new key */
	ck_assert_int_eq(load(1, &c), 0);
	ck_assert_str_eq(jwtsign_current_kid(a), jwtsign_current_kid(c));
	ck_assert_int_eq(list_dir(keydir, names, 4), 1);
	jwtsign_keys_free(&a);
	jwtsign_keys_free(&b);
	jwtsign_keys_free(&c);
}
END_TEST

START_TEST(no_key_no_create)
{
	struct jwtsign_keys *keys = NULL;
	char names[4][256];

	ck_assert_int_eq(mkdir(keydir, 0700), 0);
	ck_assert_int_eq(load(0, &keys), TOKEND_ENOTFOUND);
	ck_assert_ptr_null(keys);
	ck_assert_int_eq(list_dir(keydir, names, 4), 0);
}
END_TEST

START_TEST(bad_algorithm)
{
	static const char *const algs[] = {"none", "HS999", "hs256", "", "RS256x"};
	char err[256];

	for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
		struct jwtsign_keys *keys = NULL;
		err[0] = '\0';
		ck_assert_msg(jwtsign_keys_load(keydir, algs[i], 1, &keys, err, sizeof err) ==
				      TOKEND_EINVAL,
			      "alg \"%s\" accepted", algs[i]);
		ck_assert_ptr_null(keys);
		ck_assert_uint_gt(strlen(err), 0);
	}
	/* and no key file was made for them */
	if (access(keydir, F_OK) == 0) {
		char names[4][256];
		ck_assert_int_eq(list_dir(keydir, names, 4), 0);
	}
}
END_TEST

START_TEST(short_key)
{
	struct jwtsign_keys *keys = NULL;
	unsigned char k[64];

	memset(k, 0x42, sizeof k);
	write_key("0123456789abcdef", k, 16, 0600);
	ck_assert_int_eq(load(0, &keys), TOKEND_EINVAL);
	ck_assert_ptr_null(keys);
	/* create=1 must not paper over a bad key file */
	ck_assert_int_eq(load(1, &keys), TOKEND_EINVAL);
	ck_assert_ptr_null(keys);
}
END_TEST

START_TEST(key_31_bytes)
{
	struct jwtsign_keys *keys = NULL;
	unsigned char k[64];

	memset(k, 0x42, sizeof k);
	write_key("0123456789abcdef", k, 31, 0600);
	ck_assert_int_eq(load(0, &keys), TOKEND_EINVAL);
	ck_assert_ptr_null(keys);
}
END_TEST

START_TEST(unsafe_mode)
{
	struct jwtsign_keys *keys = NULL;
	unsigned char k[64];

	memset(k, 0x42, sizeof k);
	write_key("0123456789abcdef", k, 64, 0644);
	ck_assert_int_eq(load(0, &keys), TOKEND_EINVAL);
	ck_assert_ptr_null(keys);
	ck_assert_int_eq(load(1, &keys), TOKEND_EINVAL);
	ck_assert_ptr_null(keys);
}
END_TEST

START_TEST(unsafe_dir_mode)
{
	/* whoever can write the directory can plant a key under any kid */
	static const mode_t modes[] = {0777, 0775, 0770, 0757, 01777, 0720, 0702};
	struct jwtsign_keys *keys = NULL;
	unsigned char k[64];
	char kid[JWTSIGN_KID_LEN + 1], err[256];

	memset(k, 0x42, sizeof k);
	write_key("0123456789abcdef", k, 64, 0600);
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		ck_assert_int_eq(chmod(keydir, modes[i]), 0);
		ck_assert_msg(load(0, &keys) == TOKEND_EINVAL, "mode %o accepted", modes[i]);
		ck_assert_ptr_null(keys);
		ck_assert_int_eq(load(1, &keys), TOKEND_EINVAL);
		err[0] = '\0';
		ck_assert_int_eq(jwtsign_key_rotate(keydir, "HS256", kid, err, sizeof err),
				 TOKEND_EINVAL);
		ck_assert_ptr_nonnull(strstr(err, "writable"));
		ck_assert_int_eq(jwtsign_key_retire(keydir, "0123456789abcdef", err, sizeof err),
				 TOKEND_EINVAL);
	}
	ck_assert_int_eq(chmod(keydir, 0755), 0);
	ck_assert_int_eq(load(0, &keys), 0);
	jwtsign_keys_free(&keys);
	ck_assert_int_eq(chmod(keydir, 0700), 0);
	ck_assert_int_eq(load(0, &keys), 0);
	jwtsign_keys_free(&keys);
}
END_TEST

START_TEST(malformed_key)
{
	struct jwtsign_keys *keys = NULL;
	char p[256];
	int fd;

	mkdir(keydir, 0700);
	snprintf(p, sizeof p, "%s/0123456789abcdef.HS256.key", keydir);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "not base64 at all!\n", 19), 19);
	close(fd);
	ck_assert_int_eq(load(0, &keys), TOKEND_EINVAL);
	ck_assert_ptr_null(keys);
}
END_TEST

START_TEST(existing_key_used)
{
	struct jwtsign_keys *keys = NULL;
	unsigned char k[64];

	for (int i = 0; i < 64; i++)
		k[i] = (unsigned char)i;
	write_key("00000000000000ab", k, 64, 0600);
	ck_assert_int_eq(load(0, &keys), 0);
	ck_assert_str_eq(jwtsign_current_kid(keys), "00000000000000ab");
	jwtsign_keys_free(&keys);
}
END_TEST

START_TEST(newest_key_signs)
{
	struct jwtsign_keys *keys = NULL;
	unsigned char k[64];
	char p[256];
	struct timespec ts[2];

	memset(k, 1, sizeof k);
	write_key("1111111111111111", k, 64, 0600);
	memset(k, 2, sizeof k);
	write_key("2222222222222222", k, 64, 0600);
	memset(k, 3, sizeof k);
	write_key("3333333333333333", k, 64, 0600);
	/* 2222... is the newest, whatever the order of creation */
	for (int i = 1; i <= 3; i++) {
		snprintf(p, sizeof p, "%s/%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d.HS256.key", keydir, i, i,
			 i, i, i, i, i, i, i, i, i, i, i, i, i, i);
		ts[0].tv_sec = ts[1].tv_sec = i == 2 ? 1700000300 : 1700000000 + i;
		ts[0].tv_nsec = ts[1].tv_nsec = 0;
		ck_assert_int_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
	}
	ck_assert_int_eq(load(0, &keys), 0);
	ck_assert_str_eq(jwtsign_current_kid(keys), "2222222222222222");
	jwtsign_keys_free(&keys);
}
END_TEST

START_TEST(free_null)
{
	struct jwtsign_keys *keys = NULL;
	jwtsign_keys_free(&keys);
	ck_assert_ptr_null(keys);
}
END_TEST

/* ---- mint --------------------------------------------------------------- */

/* Decodes one base64url JWT part into a new JSON object. */
static json_t *part_json(const char *s, size_t len)
{
	unsigned char buf[4096];
	size_t n = 0;
	json_error_t e;
	json_t *j;

	ck_assert_int_eq(util_b64url_decode(s, len, buf, sizeof buf, &n), 0);
	j = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &e);
	ck_assert_msg(j != NULL, "part: %s", e.text);
	ck_assert(json_is_object(j));
	return j;
}

struct parts {
	const char *h, *p, *s;
	size_t hl, pl, sl;
};

static void split(const char *tok, struct parts *pt)
{
	const char *d1 = strchr(tok, '.'), *d2;

	ck_assert_ptr_nonnull(d1);
	d2 = strchr(d1 + 1, '.');
	ck_assert_ptr_nonnull(d2);
	ck_assert_ptr_null(strchr(d2 + 1, '.'));
	pt->h = tok;
	pt->hl = (size_t)(d1 - tok);
	pt->p = d1 + 1;
	pt->pl = (size_t)(d2 - d1 - 1);
	pt->s = d2 + 1;
	pt->sl = strlen(d2 + 1);
	ck_assert_uint_gt(pt->hl, 0);
	ck_assert_uint_gt(pt->pl, 0);
	ck_assert_uint_gt(pt->sl, 0);
	for (const char *c = tok; *c; c++)
		ck_assert_msg(isalnum((unsigned char)*c) || *c == '-' || *c == '_' || *c == '.',
			      "bad character %c in token", *c);
}

/* The HMAC key: the decoded bytes of the only key file of keydir. */
static size_t the_key(unsigned char *key, size_t cap)
{
	char names[4][256], p[512];

	ck_assert_int_eq(list_dir(keydir, names, 4), 1);
	snprintf(p, sizeof p, "%s/%s", keydir, names[0]);
	return key_of_file(p, key, cap);
}

START_TEST(mint_access)
{
	struct jwtsign_keys *keys = NULL;
	struct jwtsign_claims c = {
		.token_type = "access",
		.jti = "123e4567-e89b-42d3-a456-426614174000",
		.user_id = "00000000-1111-4222-8333-444444444444",
		.team_uuid = NULL,
		.iat = 1795830123,
		.exp = 1795830423,
	};
	char *tok = NULL;
	struct parts pt;
	json_t *h, *p;
	unsigned char key[128], sig[64], mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	size_t keylen, siglen = 0;

	ck_assert_int_eq(load(1, &keys), 0);
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	ck_assert_ptr_nonnull(tok);
	ck_assert_uint_le(strlen(tok), JWTSIGN_MAX_TOKEN);
	split(tok, &pt);

	h = part_json(pt.h, pt.hl);
	ck_assert_str_eq(json_string_value(json_object_get(h, "alg")), "HS256");
	ck_assert_str_eq(json_string_value(json_object_get(h, "typ")), "JWT");
	ck_assert_str_eq(json_string_value(json_object_get(h, "kid")), jwtsign_current_kid(keys));

	p = part_json(pt.p, pt.pl);
	ck_assert_str_eq(json_string_value(json_object_get(p, "token_type")), "access");
	ck_assert_str_eq(json_string_value(json_object_get(p, "jti")), c.jti);
	ck_assert_str_eq(json_string_value(json_object_get(p, "user_id")), c.user_id);
	ck_assert(json_is_integer(json_object_get(p, "iat")));
	ck_assert(json_is_integer(json_object_get(p, "exp")));
	ck_assert_int_eq(json_integer_value(json_object_get(p, "iat")), c.iat);
	ck_assert_int_eq(json_integer_value(json_object_get(p, "exp")), c.exp);
	ck_assert_ptr_null(json_object_get(p, "team_uuid"));

	keylen = the_key(key, sizeof key);
	ck_assert_uint_eq(keylen, JWTSIGN_HS_KEY_BYTES);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)tok,
				   pt.hl + 1 + pt.pl, mac, &maclen));
	ck_assert_uint_eq(maclen, 32);
	ck_assert_int_eq(util_b64url_decode(pt.s, pt.sl, sig, sizeof sig, &siglen), 0);
	ck_assert_uint_eq(siglen, 32);
	ck_assert_mem_eq(sig, mac, 32);

	json_decref(h);
	json_decref(p);
	free(tok);
	jwtsign_keys_free(&keys);
}
END_TEST

START_TEST(mint_api_token)
{
	struct jwtsign_keys *keys = NULL;
	struct jwtsign_claims c = {
		.token_type = "api",
		.jti = "123e4567-e89b-42d3-a456-426614174001",
		.user_id = "00000000-1111-4222-8333-444444444444",
		.team_uuid = "99999999-1111-4222-8333-444444444444",
		.iat = 1795830123,
		.exp = 4102444799LL, /* past 2038: a 64-bit integer */
	};
	char *tok = NULL, *tok2 = NULL;
	struct parts pt;
	json_t *p;

	ck_assert_int_eq(load(1, &keys), 0);
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	split(tok, &pt);
	p = part_json(pt.p, pt.pl);
	ck_assert_str_eq(json_string_value(json_object_get(p, "token_type")), "api");
	ck_assert_str_eq(json_string_value(json_object_get(p, "team_uuid")), c.team_uuid);
	ck_assert_int_eq(json_integer_value(json_object_get(p, "exp")), 4102444799LL);
	json_decref(p);

	/* HS256 is deterministic: the same claims give the same token */
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok2), 0);
	ck_assert_str_eq(tok, tok2);
	free(tok2);
	tok2 = NULL;
	c.jti = "123e4567-e89b-42d3-a456-426614174002";
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok2), 0);
	ck_assert_str_ne(tok, tok2);

	free(tok);
	free(tok2);
	jwtsign_keys_free(&keys);
}
END_TEST

START_TEST(mint_with_given_key)
{
	/* a known key, to pin the HMAC key to the decoded bytes of the file */
	struct jwtsign_keys *keys = NULL;
	struct jwtsign_claims c = {"refresh",
				   "123e4567-e89b-42d3-a456-426614174000",
				   "00000000-1111-4222-8333-444444444444",
				   NULL,
				   1,
				   2,
				   NULL,
				   NULL,
				   NULL,
				   NULL};
	unsigned char k[64], mac[EVP_MAX_MD_SIZE], sig[64];
	unsigned maclen = 0;
	size_t siglen = 0;
	char *tok = NULL;
	struct parts pt;

	for (int i = 0; i < 64; i++)
		k[i] = (unsigned char)(255 - i);
	write_key("abcdefabcdef0123", k, 64, 0600);
	ck_assert_int_eq(load(0, &keys), 0);
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	split(tok, &pt);
	HMAC(EVP_sha256(), k, 64, (const unsigned char *)tok, pt.hl + 1 + pt.pl, mac, &maclen);
	ck_assert_int_eq(util_b64url_decode(pt.s, pt.sl, sig, sizeof sig, &siglen), 0);
	ck_assert_uint_eq(siglen, 32);
	ck_assert_mem_eq(sig, mac, 32);
	free(tok);
	jwtsign_keys_free(&keys);
}
END_TEST

START_TEST(mint_null_claims_left_out)
{
	/* jwtsign.h: "NULL strings are left out" */
	struct jwtsign_keys *keys = NULL;
	struct jwtsign_claims c = {
		.token_type = "access",
		.jti = NULL,
		.user_id = NULL,
		.team_uuid = NULL,
		.iat = 10,
		.exp = 20,
	};
	char *tok = NULL;
	struct parts pt;
	json_t *p;

	ck_assert_int_eq(load(1, &keys), 0);
	ck_assert_int_eq(jwtsign_mint(keys, &c, &tok), 0);
	ck_assert_ptr_nonnull(tok);
	split(tok, &pt);
	p = part_json(pt.p, pt.pl);
	ck_assert_str_eq(json_string_value(json_object_get(p, "token_type")), "access");
	ck_assert_ptr_null(json_object_get(p, "jti"));
	ck_assert_ptr_null(json_object_get(p, "user_id"));
	ck_assert_ptr_null(json_object_get(p, "team_uuid"));
	ck_assert_int_eq(json_integer_value(json_object_get(p, "exp")), 20);
	json_decref(p);
	free(tok);
	jwtsign_keys_free(&keys);
}
END_TEST

/* ---- check ------------------------------------------------------------- */

/* A token of header (JSON text) and a valid access payload, signed with the key. */
static char *signed_with_header(const char *header)
{
	unsigned char key[128], mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	size_t keylen = the_key(key, sizeof key);
	char payload[512], tok[2048];
	size_t n;
	int w;

	w = snprintf(
		payload, sizeof payload,
		"{\"exp\":%lld,\"iat\":%lld,\"jti\":\"123e4567-e89b-42d3-a456-426614174000\","
		"\"token_type\":\"access\",\"user_id\":\"00000000-1111-4222-8333-444444444444\"}",
		(long long)util_now() + 300, (long long)util_now());
	ck_assert_int_gt(w, 0);
	n = util_b64url_encode((const unsigned char *)header, strlen(header), tok, sizeof tok);
	tok[n++] = '.';
	n += util_b64url_encode((const unsigned char *)payload, (size_t)w, tok + n, sizeof tok - n);
	ck_assert_ptr_nonnull(
		HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)tok, n, mac, &maclen));
	tok[n++] = '.';
	util_b64url_encode(mac, maclen, tok + n, sizeof tok - n);
	return strdup(tok);
}

/* fmt has one "%s", where the current kid goes (spliced, not a printf format). */
static int check_header(struct jwtsign_keys *keys, const char *fmt, const char **reason)
{
	struct jwtsign_policy pol = {.now = util_now(), .leeway = 0};
	struct jwtsign_token t;
	const char *at = strstr(fmt, "%s");
	char header[512];
	char *tok;
	int rc;

	ck_assert_ptr_nonnull(at);
	snprintf(header, sizeof header, "%.*s%s%s", (int)(at - fmt), fmt, jwtsign_current_kid(keys),
		 at + 2);
	tok = signed_with_header(header);
	ck_assert_ptr_nonnull(tok);
	*reason = NULL;
	rc = jwtsign_check(keys, tok, strlen(tok), &pol, &t, reason);
	free(tok);
	return rc;
}

START_TEST(check_refuses_crit)
{
	/* RFC 7515 4.1.11: tokend understands no extension, so any crit fails */
	static const char *const crit[] = {
		"{\"alg\":\"HS256\",\"crit\":[\"x-unknown\"],\"kid\":\"%s\",\"typ\":\"JWT\","
		"\"x-unknown\":1}",
		"{\"alg\":\"HS256\",\"crit\":[\"x-unknown\"],\"kid\":\"%s\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS256\",\"crit\":[],\"kid\":\"%s\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS256\",\"crit\":\"x-unknown\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS256\",\"crit\":null,\"kid\":\"%s\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"kid\":\"%s\"}",
		"{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"kid\":\"%s\",\"b64\":false}",
		"{\"crit\":{},\"alg\":\"HS256\",\"kid\":\"%s\"}",
	};
	struct jwtsign_keys *keys = NULL;
	const char *reason;

	ck_assert_int_eq(load(1, &keys), 0);
	/* the controls: the same tokens without crit verify */
	ck_assert_int_eq(check_header(keys, "{\"alg\":\"HS256\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
				      &reason),
			 0);
	ck_assert_int_eq(check_header(keys,
				      "{\"alg\":\"HS256\",\"kid\":\"%s\",\"typ\":\"JWT\","
				      "\"x-unknown\":1}",
				      &reason),
			 0);
	for (size_t i = 0; i < sizeof crit / sizeof crit[0]; i++) {
		ck_assert_msg(check_header(keys, crit[i], &reason) == TOKEND_EAUTH,
			      "accepted header %s", crit[i]);
		ck_assert_ptr_nonnull(reason);
	}
	jwtsign_keys_free(&keys);
}
END_TEST

static Suite *jwtsign_suite(void)
{
	Suite *s = suite_create("jwtsign");
	TCase *tc = tcase_create("keys");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, create_key_dir);
	tcase_add_test(tc, reload_same_kid);
	tcase_add_test(tc, no_key_no_create);
	tcase_add_test(tc, bad_algorithm);
	tcase_add_test(tc, short_key);
	tcase_add_test(tc, key_31_bytes);
	tcase_add_test(tc, unsafe_mode);
	tcase_add_test(tc, unsafe_dir_mode);
	tcase_add_test(tc, malformed_key);
	tcase_add_test(tc, existing_key_used);
	tcase_add_test(tc, newest_key_signs);
	tcase_add_test(tc, free_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("mint");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, mint_access);
	tcase_add_test(tc, mint_api_token);
	tcase_add_test(tc, mint_with_given_key);
	tcase_add_test(tc, mint_null_claims_left_out);
	suite_add_tcase(s, tc);

	tc = tcase_create("check");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, check_refuses_crit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return UNIT_MAIN(jwtsign_suite(), "jwtsign", base, NULL);
}
