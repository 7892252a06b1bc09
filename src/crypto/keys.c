/* SPDX-License-Identifier: MIT */
/*
 * This module implements the signing keys: files in a key directory, never
 * the database. "<kid>.HS256.key" holds 64 random bytes as base64url text;
 * "<kid>.RS256.key" / "<kid>.ES256.key" hold a PEM private key, parsed once
 * into an EVP_PKEY (libjwt would parse the PEM on every call). The file
 * "current" names the signing kid. A running server re-reads the directory
 * (keys_reload.c: on SIGHUP, when its fingerprint here changed, on an
 * unknown kid) and swaps the whole set under a write lock. As OpenSSH's
 * StrictModes, the directory and the key files must belong to the user
 * tokend runs as (or root) and be writable by no one else, since a key
 * planted under a new kid would mint tokens.
 */
#include "tokend/keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/keys.h"
#include "tokend/err.h"
#include "tokend/util.h"

#define KEY_FILE_MAX 16384
#define CURRENT_FILE "current"

static const char *const alg_names[] = {"HS256", "RS256", "ES256"};

const char *keys_alg_name(enum key_alg alg)
{
	return alg_names[alg];
}

static int alg_parse(const char *s, enum key_alg *out)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(s, alg_names[i]) == 0) {
			*out = (enum key_alg)i;
			return 0;
		}
	}
	return TOKEND_EINVAL;
}

bool jwtsign_alg_supported(const char *alg)
{
	enum key_alg a;

	return alg_parse(alg, &a) == 0;
}

const struct key *keys_find(const struct keyset *set, const char *kid)
{
	for (size_t i = 0; i < set->count; i++)
		if (strcmp(set->keys[i].kid, kid) == 0)
			return &set->keys[i];
	return NULL;
}

static bool kid_valid(const char *s, size_t len)
{
	if (len != JWTSIGN_KID_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Splits "<kid>.<alg>.key"; false for other names. */
static bool key_file_name(const char *name, enum key_alg *alg)
{
	size_t n = strlen(name);
	char a[8];

	if (n != JWTSIGN_KID_LEN + 10 || name[JWTSIGN_KID_LEN] != '.' ||
	    strcmp(name + n - 4, ".key") != 0 || !kid_valid(name, JWTSIGN_KID_LEN))
		return false;
	memcpy(a, name + JWTSIGN_KID_LEN + 1, 5);
	a[5] = '\0';
	return alg_parse(a, alg) == 0;
}

/*
 * True when st is owned by the user we run as, or by root: as OpenSSH's
 * StrictModes. Anyone else who owns a key file or the key directory can
 * change it, and keys are chosen by kid: a planted key mints any token.
 */
static bool owner_ok(const struct stat *st)
{
	return st->st_uid == geteuid() || st->st_uid == 0;
}

/* Reads a whole small file that only its owner may read. */
static int read_private(int dirfd, const char *name, char *buf, size_t cap, size_t *len,
			time_t *mtime, char *errbuf, size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int rc = TOKEND_EINVAL;

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
	if (!owner_ok(&st)) {
		snprintf(errbuf, errlen,
			 "%s: owned by uid %u; a key file must be owned by uid %u (the user "
			 "tokend runs as) or root; chown it",
			 name, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
	n = read(fd, buf, cap - 1);
	if (n < 0) {
		snprintf(errbuf, errlen, "%s: cannot read: %s", name, strerror(errno));
		rc = TOKEND_EIO;
		goto out;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	*mtime = st.st_mtime;
	rc = 0;
out:
	close(fd);
	return rc;
}

/* Serial numbers of HS256 keys (see struct key). */
static atomic_ullong key_serials = 1;

EVP_MAC_CTX *keys_hmac_new(const unsigned char *key, size_t len)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};

	EVP_MAC_free(mac); /* the context keeps its own reference */
	if (ctx != NULL && EVP_MAC_init(ctx, key, len, params) != 1) {
		EVP_MAC_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

void keys_header_init(struct key *k)
{
	char header[80];
	int n = snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
			 keys_alg_name(k->alg), k->kid);

	k->header_len = util_b64url_encode((const unsigned char *)header, (size_t)n, k->header_b64,
					   sizeof(k->header_b64));
}

static int key_read(int dirfd, const char *name, enum key_alg alg, struct key *k, char *errbuf,
		    size_t errlen)
{
	char text[KEY_FILE_MAX];
	size_t len = 0;
	BIO *bio = NULL;
	int rc;

	rc = read_private(dirfd, name, text, sizeof(text), &len, &k->mtime, errbuf, errlen);
	if (rc != 0)
		goto out;
	memcpy(k->kid, name, JWTSIGN_KID_LEN);
	k->kid[JWTSIGN_KID_LEN] = '\0';
	k->alg = alg;
	rc = TOKEND_EINVAL;
	if (alg == KEY_HS256) {
		while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
			len--;
		/* libjwt verifies anything with an empty key: never short. */
		if (util_b64url_decode(text, len, k->secret, sizeof(k->secret), &k->secret_len) !=
			    0 ||
		    k->secret_len < 32) {
			snprintf(errbuf, errlen,
				 "%s: not one line of base64url holding 32 to 64 key bytes", name);
			goto out;
		}
		k->mac = keys_hmac_new(k->secret, k->secret_len);
		k->serial = atomic_fetch_add(&key_serials, 1);
		if (k->mac == NULL) {
			snprintf(errbuf, errlen, "%s: cannot key HMAC-SHA256", name);
			rc = TOKEND_ECRYPTO;
			goto out;
		}
	} else {
		int want = alg == KEY_RS256 ? EVP_PKEY_RSA : EVP_PKEY_EC;
		bio = BIO_new_mem_buf(text, (int)len);
		k->pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
		if (k->pkey == NULL || EVP_PKEY_get_base_id(k->pkey) != want ||
		    (alg == KEY_RS256 && EVP_PKEY_get_bits(k->pkey) < 2048) ||
		    (alg == KEY_ES256 && EVP_PKEY_get_bits(k->pkey) != 256)) {
			snprintf(errbuf, errlen, "%s: not a PEM %s private key", name,
				 alg == KEY_RS256 ? "RSA (2048 bits or more)" : "EC P-256");
			EVP_PKEY_free(k->pkey);
			k->pkey = NULL;
			goto out;
		}
	}
	keys_header_init(k);
	rc = 0;
out:
	BIO_free(bio);
	OPENSSL_cleanse(text, sizeof(text));
	return rc;
}

/* Writes data to dir/name atomically (temp file, fsync, rename), mode 0600. */
static int write_private(int dirfd, const char *name, const void *data, size_t len, bool exclusive,
			 char *errbuf, size_t errlen)
{
	char tmp[96];
	int fd;
	int rc = TOKEND_EIO;

	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	unlinkat(dirfd, tmp, 0);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(errbuf, errlen, "%s: cannot create: %s", tmp, strerror(errno));
		return TOKEND_EIO;
	}
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) != 0) {
		snprintf(errbuf, errlen, "%s: cannot write: %s", tmp, strerror(errno));
		close(fd);
		goto out;
	}
	close(fd);
	if (exclusive && faccessat(dirfd, name, F_OK, 0) == 0) {
		snprintf(errbuf, errlen, "%s: exists already", name);
		goto out;
	}
	if (renameat(dirfd, tmp, dirfd, name) != 0) {
		snprintf(errbuf, errlen, "%s: cannot rename: %s", name, strerror(errno));
		goto out;
	}
	fsync(dirfd);
	return 0;
out:
	unlinkat(dirfd, tmp, 0);
	return rc;
}

/* Creates a new key file of alg in dirfd and names it in kid. */
static int key_create(int dirfd, enum key_alg alg, char kid[JWTSIGN_KID_LEN + 1], char *errbuf,
		      size_t errlen)
{
	unsigned char id[JWTSIGN_KID_LEN / 2];
	unsigned char secret[JWTSIGN_HS_KEY_BYTES];
	char text[KEY_FILE_MAX];
	char name[64];
	size_t len = 0;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *pem;
	int rc;

	rc = util_random(id, sizeof(id));
	if (rc != 0) {
		snprintf(errbuf, errlen, "no random bytes for a key");
		return rc;
	}
	for (size_t i = 0; i < sizeof(id); i++)
		snprintf(kid + 2 * i, 3, "%02x", id[i]);
	snprintf(name, sizeof(name), "%s.%s.key", kid, keys_alg_name(alg));
	rc = TOKEND_ECRYPTO;
	if (alg == KEY_HS256) {
		if (util_random(secret, sizeof(secret)) != 0)
			goto out;
		len = util_b64url_encode(secret, sizeof(secret), text, sizeof(text) - 1);
		text[len++] = '\n';
	} else {
		long plen;
		pkey = alg == KEY_RS256 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
					: EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		bio = BIO_new(BIO_s_mem());
		if (pkey == NULL || bio == NULL ||
		    PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1)
			goto out;
		plen = BIO_get_mem_data(bio, &pem);
		if (plen <= 0 || (size_t)plen >= sizeof(text))
			goto out;
		memcpy(text, pem, (size_t)plen);
		len = (size_t)plen;
	}
	rc = write_private(dirfd, name, text, len, true, errbuf, errlen);
out:
	if (rc == TOKEND_ECRYPTO)
		snprintf(errbuf, errlen, "cannot generate a %s key", keys_alg_name(alg));
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(text, sizeof(text));
	return rc;
}

static int set_current(int dirfd, const char *kid, char *errbuf, size_t errlen)
{
	char line[JWTSIGN_KID_LEN + 2];

	snprintf(line, sizeof(line), "%s\n", kid);
	return write_private(dirfd, CURRENT_FILE, line, strlen(line), false, errbuf, errlen);
}

/* Reads the kid named by "current" into kid; false when absent or bad. */
static bool read_current(int dirfd, char kid[JWTSIGN_KID_LEN + 1])
{
	char buf[64];
	size_t len;
	time_t mtime;
	char err[128];

	if (read_private(dirfd, CURRENT_FILE, buf, sizeof(buf), &len, &mtime, err, sizeof(err)) !=
	    0)
		return false;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (!kid_valid(buf, len))
		return false;
	memcpy(kid, buf, JWTSIGN_KID_LEN);
	kid[JWTSIGN_KID_LEN] = '\0';
	return true;
}

void keys_set_free(struct keyset *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->count; i++) {
		EVP_PKEY_free(set->keys[i].pkey);
		EVP_MAC_CTX_free(set->keys[i].mac);
	}
	OPENSSL_cleanse(set, sizeof(*set));
	free(set);
}

/*
 * Opens (with create, first makes, 0700) the key directory, and refuses one
 * that is writable by group or others or owned by another user than ours
 * or root. Every reader and writer of keys comes through here: serve, its
 * SIGHUP reload, and `tokend key list|rotate|retire`.
 */
static int open_dir(const char *dir, int create, int *fd, char *errbuf, size_t errlen)
{
	struct stat st;

	if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(errbuf, errlen, "%s: cannot create key directory: %s", dir,
			 strerror(errno));
		return TOKEND_EIO;
	}
	*fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*fd < 0) {
		snprintf(errbuf, errlen, "%s: cannot open key directory: %s", dir, strerror(errno));
		return errno == ENOENT ? TOKEND_ENOTFOUND : TOKEND_EIO;
	}
	/*
	 * Checked on the open descriptor (no race with a rename): whoever can
	 * write here can add a key file under a kid of their choosing. The
	 * sticky bit does not help: a planted file is a new name, not a change
	 * to ours. Parent directories are not checked (pytest and many hosts
	 * keep state under /tmp).
	 */
	if (fstat(*fd, &st) != 0) {
		snprintf(errbuf, errlen, "%s: cannot stat key directory: %s", dir, strerror(errno));
		goto unsafe;
	}
	if ((st.st_mode & 022) != 0) {
		snprintf(errbuf, errlen,
			 "%s: key directory is writable by group or others (mode %o), so anyone "
			 "could plant a signing key; chmod go-w it",
			 dir, (unsigned)(st.st_mode & 07777));
		goto unsafe;
	}
	if (!owner_ok(&st)) {
		snprintf(errbuf, errlen,
			 "%s: key directory is owned by uid %u; it must be owned by uid %u (the "
			 "user tokend runs as) or root; chown it",
			 dir, (unsigned)st.st_uid, (unsigned)geteuid());
		goto unsafe;
	}
	return 0;
unsafe:
	close(*fd);
	*fd = -1;
	return TOKEND_EINVAL;
}

int keys_read_dir(const char *dir, const char *alg, int create, struct keyset **out, char *errbuf,
		  size_t errlen)
{
	struct keyset *set = NULL;
	DIR *d = NULL;
	struct dirent *de;
	enum key_alg want;
	char kid[JWTSIGN_KID_LEN + 1];
	char msg[256];
	int fd = -1;
	int rc;

	*out = NULL;
	if (alg_parse(alg, &want) != 0) {
		snprintf(errbuf, errlen, "unsupported algorithm \"%s\"", alg);
		return TOKEND_EINVAL;
	}
	rc = open_dir(dir, create, &fd, errbuf, errlen);
	if (rc != 0)
		return rc;
	set = calloc(1, sizeof(*set));
	d = set ? fdopendir(dup(fd)) : NULL;
	if (d == NULL) {
		rc = TOKEND_ENOMEM;
		goto fail;
	}
	while ((de = readdir(d)) != NULL) {
		enum key_alg a;
		if (!key_file_name(de->d_name, &a))
			continue;
		if (set->count == JWTSIGN_MAX_KEYS) {
			snprintf(errbuf, errlen, "%s: more than %d keys", dir, JWTSIGN_MAX_KEYS);
			rc = TOKEND_EINVAL;
			goto fail;
		}
		rc = key_read(fd, de->d_name, a, &set->keys[set->count], msg, sizeof(msg));
		if (rc != 0) {
			snprintf(errbuf, errlen, "%s/%s", dir, msg);
			goto fail;
		}
		set->count++;
	}
	if (set->count == 0) {
		if (!create) {
			snprintf(errbuf, errlen, "%s: no signing key", dir);
			rc = TOKEND_ENOTFOUND;
			goto fail;
		}
		rc = key_create(fd, want, kid, msg, sizeof(msg));
		if (rc == 0)
			rc = set_current(fd, kid, msg, sizeof(msg));
		if (rc != 0) {
			snprintf(errbuf, errlen, "%s/%s", dir, msg);
			goto fail;
		}
		closedir(d);
		close(fd);
		keys_set_free(set);
		return keys_read_dir(dir, alg, 0, out, errbuf, errlen);
	}
	/*
	 * "current" names the signer; without it, or when it names a key this
	 * directory lacks (a copy that got "current" before the key file), the
	 * newest key signs. A reload keeps the old signer instead
	 * (keys_reload.c), seeing named.
	 */
	if (read_current(fd, kid))
		memcpy(set->named, kid, sizeof(set->named));
	if (set->named[0] != '\0' && keys_find(set, kid) != NULL) {
		set->current = (size_t)(keys_find(set, kid) - set->keys);
	} else {
		for (size_t i = 1; i < set->count; i++) {
			const struct key *a = &set->keys[i];
			const struct key *b = &set->keys[set->current];
			if (a->mtime > b->mtime ||
			    (a->mtime == b->mtime && strcmp(a->kid, b->kid) > 0))
				set->current = i;
		}
	}
	closedir(d);
	close(fd);
	*out = set;
	return 0;
fail:
	if (d != NULL)
		closedir(d);
	if (fd >= 0)
		close(fd);
	keys_set_free(set);
	return rc;
}

/* FNV-1a, 64 bits, over len bytes of p, from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_BASIS 0xcbf29ce484222325ULL

/* The parts of st a reload depends on, after name. */
static uint64_t entry_hash(const char *name, const struct stat *st)
{
	uint64_t h = fnv(FNV_BASIS, name, strlen(name) + 1);
	int64_t v[] = {(int64_t)st->st_ino,         (int64_t)st->st_size,
		       (int64_t)st->st_mtim.tv_sec, (int64_t)st->st_mtim.tv_nsec,
		       (int64_t)st->st_ctim.tv_sec, (int64_t)st->st_ctim.tv_nsec,
		       (int64_t)st->st_mode,        (int64_t)st->st_uid};

	return fnv(h, v, sizeof(v));
}

uint64_t keys_dir_fingerprint(const char *dir)
{
	char err[512];
	struct stat st;
	struct dirent *de;
	DIR *d;
	uint64_t sum = 0, n = 0;
	int fd = -1;

	if (open_dir(dir, 0, &fd, err, sizeof(err)) != 0)
		return fnv(FNV_BASIS ^ 1, err, strlen(err)); /* the error is the state */
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return FNV_BASIS ^ 2;
	}
	while ((de = readdir(d)) != NULL) {
		enum key_alg a;
		if (!key_file_name(de->d_name, &a) && strcmp(de->d_name, CURRENT_FILE) != 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			memset(&st, 0, sizeof(st)); /* gone since readdir: still a change */
		sum += entry_hash(de->d_name, &st); /* commutative: readdir's order is free */
		n++;
	}
	if (fstat(dirfd(d), &st) == 0)
		sum += fnv(FNV_BASIS, (int64_t[]){(int64_t)st.st_mode, (int64_t)st.st_uid},
			   2 * sizeof(int64_t));
	closedir(d); /* closes fd */
	return fnv(sum, &n, sizeof(n));
}

int jwtsign_keys_load(const char *dir, const char *alg, int create, struct jwtsign_keys **out,
		      char *errbuf, size_t errlen)
{
	struct jwtsign_keys *ks;
	uint64_t fp;
	int rc;

	*out = NULL;
	ks = calloc(1, sizeof(*ks));
	if (ks == NULL)
		return TOKEND_ENOMEM;
	if (strlen(dir) >= sizeof(ks->dir) || strlen(alg) >= sizeof(ks->alg)) {
		free(ks);
		snprintf(errbuf, errlen, "key directory path too long");
		return TOKEND_EINVAL;
	}
	/* Before the read: a change made during it is seen by the next check. */
	fp = keys_dir_fingerprint(dir);
	rc = keys_read_dir(dir, alg, create, &ks->set, errbuf, errlen);
	if (rc == 0 && create)
		fp = keys_dir_fingerprint(dir); /* the first key may just have been made */
	if (rc != 0) {
		free(ks);
		return rc;
	}
	pthread_rwlock_init(&ks->lock, NULL);
	pthread_mutex_init(&ks->reload_lock, NULL);
	ks->loaded_fp = ks->tried_fp = fp;
	snprintf(ks->dir, sizeof(ks->dir), "%s", dir);
	snprintf(ks->alg, sizeof(ks->alg), "%s", alg);
	memcpy(ks->current_kid, ks->set->keys[ks->set->current].kid, sizeof(ks->current_kid));
	*out = ks;
	return 0;
}

unsigned jwtsign_keys_generation(const struct jwtsign_keys *keys)
{
	return atomic_load(&keys->generation);
}

void jwtsign_keys_free(struct jwtsign_keys **keys)
{
	if (keys == NULL || *keys == NULL)
		return;
	keys_set_free((*keys)->set);
	pthread_rwlock_destroy(&(*keys)->lock);
	pthread_mutex_destroy(&(*keys)->reload_lock);
	free(*keys);
	*keys = NULL;
}

const char *jwtsign_current_kid(const struct jwtsign_keys *keys)
{
	return keys->current_kid;
}

void jwtsign_signing_kid(struct jwtsign_keys *keys, char out[JWTSIGN_KID_LEN + 1])
{
	pthread_rwlock_rdlock(&keys->lock);
	memcpy(out, keys->set->keys[keys->set->current].kid, JWTSIGN_KID_LEN + 1);
	pthread_rwlock_unlock(&keys->lock);
}

size_t jwtsign_keys_list(struct jwtsign_keys *keys, struct jwtsign_key_info *out, size_t max)
{
	size_t n = 0;

	pthread_rwlock_rdlock(&keys->lock);
	for (size_t i = 0; i < keys->set->count && n < max; i++, n++) {
		const struct key *k = &keys->set->keys[i];
		memcpy(out[n].kid, k->kid, sizeof(out[n].kid));
		snprintf(out[n].alg, sizeof(out[n].alg), "%s", keys_alg_name(k->alg));
		out[n].created = (int64_t)k->mtime;
		out[n].current = i == keys->set->current;
	}
	pthread_rwlock_unlock(&keys->lock);
	return n;
}

int jwtsign_key_rotate(const char *dir, const char *alg, char kid_out[JWTSIGN_KID_LEN + 1],
		       char *errbuf, size_t errlen)
{
	enum key_alg a;
	int fd;
	int rc;

	if (alg_parse(alg, &a) != 0) {
		snprintf(errbuf, errlen, "unsupported algorithm \"%s\" (HS256, RS256, ES256)", alg);
		return TOKEND_EINVAL;
	}
	rc = open_dir(dir, 1, &fd, errbuf, errlen);
	if (rc != 0)
		return rc;
	rc = key_create(fd, a, kid_out, errbuf, errlen);
	if (rc == 0)
		rc = set_current(fd, kid_out, errbuf, errlen);
	close(fd);
	return rc;
}

int jwtsign_key_retire(const char *dir, const char *kid, char *errbuf, size_t errlen)
{
	char current[JWTSIGN_KID_LEN + 1];
	char name[64];
	int fd;
	int rc = TOKEND_ENOTFOUND;

	if (!kid_valid(kid, strlen(kid))) {
		snprintf(errbuf, errlen, "no key \"%s\"", kid);
		return TOKEND_ENOTFOUND;
	}
	rc = open_dir(dir, 0, &fd, errbuf, errlen);
	if (rc != 0)
		return rc;
	rc = TOKEND_ENOTFOUND;
	snprintf(errbuf, errlen, "no key \"%s\"", kid);
	if (read_current(fd, current) && strcmp(current, kid) == 0) {
		snprintf(errbuf, errlen, "key %s is the current signing key: rotate first", kid);
		rc = TOKEND_ECONFLICT;
		goto out;
	}
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "%s.%s.key", kid, alg_names[i]);
		if (unlinkat(fd, name, 0) == 0) {
			rc = 0;
			break;
		}
	}
out:
	close(fd);
	return rc;
}

int jwtsign_key_add(const char *dir, const char *alg, char kid_out[JWTSIGN_KID_LEN + 1],
		    char *errbuf, size_t errlen)
{
	struct keyset *set = NULL;
	char kid[JWTSIGN_KID_LEN + 1];
	enum key_alg a;
	int fd;
	int rc;

	if (alg_parse(alg, &a) != 0) {
		snprintf(errbuf, errlen, "unsupported algorithm \"%s\" (HS256, RS256, ES256)", alg);
		return TOKEND_EINVAL;
	}
	rc = open_dir(dir, 1, &fd, errbuf, errlen);
	if (rc != 0)
		return rc;
	/*
	 * Without a valid "current" the newest key signs: the new one would
	 * sign at once. Pin the signer first, to the key that signs now; in a
	 * directory with no key yet, the new key is the only one and signs.
	 */
	if (!read_current(fd, kid)) {
		rc = keys_read_dir(dir, alg, 0, &set, errbuf, errlen);
		if (rc == 0)
			rc = set_current(fd, set->keys[set->current].kid, errbuf, errlen);
		keys_set_free(set);
		if (rc != 0 && rc != TOKEND_ENOTFOUND)
			goto out;
	}
	rc = key_create(fd, a, kid_out, errbuf, errlen);
	if (rc == 0 && !read_current(fd, kid))
		rc = set_current(fd, kid_out, errbuf, errlen);
out:
	close(fd);
	return rc;
}

int jwtsign_key_use(const char *dir, const char *kid, char *errbuf, size_t errlen)
{
	struct keyset *set = NULL;
	const struct key *k;
	int fd = -1;
	int rc;

	if (!kid_valid(kid, strlen(kid))) {
		snprintf(errbuf, errlen, "no key \"%s\"", kid);
		return TOKEND_ENOTFOUND;
	}
	/* The whole directory must load, as a server would read it. */
	rc = keys_read_dir(dir, "HS256", 0, &set, errbuf, errlen);
	if (rc != 0)
		return rc;
	k = keys_find(set, kid);
	if (k == NULL) {
		snprintf(errbuf, errlen, "no key \"%s\" in %s", kid, dir);
		rc = TOKEND_ENOTFOUND;
		goto out;
	}
	rc = open_dir(dir, 0, &fd, errbuf, errlen);
	if (rc == 0)
		rc = set_current(fd, kid, errbuf, errlen);
out:
	if (fd >= 0)
		close(fd);
	keys_set_free(set);
	return rc;
}
