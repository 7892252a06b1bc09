/* SPDX-License-Identifier: MIT */
/*
 * This module implements the signing keys (files of a key directory, never
 * the database) and JWT minting with libjwt. It is the only includer of
 * jwt.h. libjwt's pitfalls (../shared/PITFALLS.md) are kept here: a key is
 * never empty or short, and the kid always goes in the header.
 */
#include "tokend/jwtsign.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokend/err.h"
#include "tokend/util.h"

#define KEYS_MAX 64
#define KEY_FILE_MAX 4096

struct key {
	char kid[JWTSIGN_KID_LEN + 1];
	unsigned char secret[JWTSIGN_HS_KEY_BYTES];
	size_t secret_len;
	time_t mtime;
};

struct jwtsign_keys {
	struct key keys[KEYS_MAX];
	size_t count;
	size_t current; /* index of the signing key */
};

static bool kid_valid(const char *s, size_t len)
{
	if (len != JWTSIGN_KID_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Reads and decodes one HS256 key file into k. */
static int key_read(int dirfd, const char *name, struct key *k, char *errbuf, size_t errlen)
{
	char text[KEY_FILE_MAX];
	struct stat st;
	ssize_t n;
	size_t len;
	int fd;
	int rc = TOKEND_EINVAL;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(errbuf, errlen, "%s: cannot open: %s", name, strerror(errno));
		return TOKEND_EIO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(errbuf, errlen, "%s: not a regular file", name);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(errbuf, errlen, "%s: readable by others (mode %03o); chmod 600 it", name,
			 (unsigned)(st.st_mode & 0777));
		goto out;
	}
	n = read(fd, text, sizeof(text) - 1);
	if (n < 0) {
		snprintf(errbuf, errlen, "%s: cannot read: %s", name, strerror(errno));
		rc = TOKEND_EIO;
		goto out;
	}
	len = (size_t)n;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	if (util_b64url_decode(text, len, k->secret, sizeof(k->secret), &k->secret_len) != 0 ||
	    k->secret_len < 32) {
		snprintf(errbuf, errlen,
			 "%s: not one line of base64url holding at least 32 key bytes", name);
		goto out;
	}
	memcpy(k->kid, name, JWTSIGN_KID_LEN);
	k->kid[JWTSIGN_KID_LEN] = '\0';
	k->mtime = st.st_mtime;
	rc = 0;
out:
	OPENSSL_cleanse(text, sizeof(text));
	close(fd);
	return rc;
}

/* Creates a new HS256 key file in dirfd; fills k. */
static int key_create(int dirfd, struct key *k, char *errbuf, size_t errlen)
{
	unsigned char id[JWTSIGN_KID_LEN / 2];
	char text[JWTSIGN_HS_KEY_BYTES * 2];
	char name[64];
	size_t len;
	int fd;
	int rc;

	rc = util_random(id, sizeof(id));
	if (rc == 0)
		rc = util_random(k->secret, JWTSIGN_HS_KEY_BYTES);
	if (rc != 0) {
		snprintf(errbuf, errlen, "no random bytes for a key");
		return rc;
	}
	for (size_t i = 0; i < sizeof(id); i++)
		snprintf(k->kid + 2 * i, 3, "%02x", id[i]);
	k->secret_len = JWTSIGN_HS_KEY_BYTES;
	snprintf(name, sizeof(name), "%s.HS256.key", k->kid);
	len = util_b64url_encode(k->secret, k->secret_len, text, sizeof(text) - 1);
	text[len++] = '\n';
	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(errbuf, errlen, "%s: cannot create: %s", name, strerror(errno));
		rc = TOKEND_EIO;
		goto out;
	}
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
		snprintf(errbuf, errlen, "%s: cannot write: %s", name, strerror(errno));
		rc = TOKEND_EIO;
	}
	close(fd);
	k->mtime = time(NULL);
out:
	OPENSSL_cleanse(text, sizeof(text));
	return rc;
}

int jwtsign_keys_load(const char *dir, const char *alg, int create, struct jwtsign_keys **out,
		      char *errbuf, size_t errlen)
{
	struct jwtsign_keys *ks = NULL;
	DIR *d = NULL;
	struct dirent *de;
	char msg[256];
	int rc;

	*out = NULL;
	if (strcmp(alg, "HS256") != 0) {
		snprintf(errbuf, errlen, "unsupported algorithm \"%s\"", alg);
		return TOKEND_EINVAL;
	}
	if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(errbuf, errlen, "%s: cannot create key directory: %s", dir,
			 strerror(errno));
		return TOKEND_EIO;
	}
	ks = calloc(1, sizeof(*ks));
	if (ks == NULL)
		return TOKEND_ENOMEM;
	d = opendir(dir);
	if (d == NULL) {
		snprintf(errbuf, errlen, "%s: cannot open key directory: %s", dir, strerror(errno));
		rc = errno == ENOENT ? TOKEND_ENOTFOUND : TOKEND_EIO;
		goto fail;
	}
	while ((de = readdir(d)) != NULL) {
		const char *dot = strchr(de->d_name, '.');
		if (dot == NULL || strcmp(dot, ".HS256.key") != 0)
			continue;
		if (!kid_valid(de->d_name, (size_t)(dot - de->d_name)))
			continue;
		if (ks->count == KEYS_MAX) {
			snprintf(errbuf, errlen, "%s: more than %d keys", dir, KEYS_MAX);
			rc = TOKEND_EINVAL;
			goto fail;
		}
		rc = key_read(dirfd(d), de->d_name, &ks->keys[ks->count], msg, sizeof(msg));
		if (rc != 0) {
			snprintf(errbuf, errlen, "%s/%s", dir, msg);
			goto fail;
		}
		ks->count++;
	}
	if (ks->count == 0) {
		if (!create) {
			snprintf(errbuf, errlen, "%s: no HS256 key", dir);
			rc = TOKEND_ENOTFOUND;
			goto fail;
		}
		rc = key_create(dirfd(d), &ks->keys[0], msg, sizeof(msg));
		if (rc != 0) {
			snprintf(errbuf, errlen, "%s/%s", dir, msg);
			goto fail;
		}
		ks->count = 1;
	}
	/* The newest key signs; ties go to the greater kid, for determinism. */
	for (size_t i = 1; i < ks->count; i++) {
		const struct key *a = &ks->keys[i];
		const struct key *b = &ks->keys[ks->current];
		if (a->mtime > b->mtime || (a->mtime == b->mtime && strcmp(a->kid, b->kid) > 0))
			ks->current = i;
	}
	closedir(d);
	*out = ks;
	return 0;
fail:
	if (d != NULL)
		closedir(d);
	jwtsign_keys_free(&ks);
	return rc;
}

void jwtsign_keys_free(struct jwtsign_keys **keys)
{
	if (keys == NULL || *keys == NULL)
		return;
	OPENSSL_cleanse(*keys, sizeof(**keys));
	free(*keys);
	*keys = NULL;
}

const char *jwtsign_current_kid(const struct jwtsign_keys *keys)
{
	return keys->keys[keys->current].kid;
}

int jwtsign_mint(const struct jwtsign_keys *keys, const struct jwtsign_claims *c, char **token)
{
	const struct key *k = &keys->keys[keys->current];
	jwt_t *jwt = NULL;
	json_t *claims;
	char *claims_text = NULL;
	int rc = TOKEND_ENOMEM;

	*token = NULL;
	claims = json_pack("{s:s, s:I, s:I, s:s, s:s}", "token_type", c->token_type, "exp",
			   (json_int_t)c->exp, "iat", (json_int_t)c->iat, "jti", c->jti,
			   "user_id", c->user_id);
	if (claims == NULL)
		goto out;
	if (c->team_uuid != NULL &&
	    json_object_set_new(claims, "team_uuid", json_string(c->team_uuid)) != 0)
		goto out;
	claims_text = json_dumps(claims, JSON_COMPACT);
	if (claims_text == NULL || jwt_new(&jwt) != 0)
		goto out;
	rc = TOKEND_ECRYPTO;
	/* A key is never empty here: libjwt would sign with "none". */
	if (k->secret_len < 32 ||
	    jwt_set_alg(jwt, JWT_ALG_HS256, k->secret, (int)k->secret_len) != 0 ||
	    jwt_add_header(jwt, "kid", k->kid) != 0 || jwt_add_grants_json(jwt, claims_text) != 0)
		goto out;
	*token = jwt_encode_str(jwt);
	if (*token != NULL)
		rc = 0;
out:
	jwt_free(jwt);
	free(claims_text);
	json_decref(claims);
	return rc;
}
