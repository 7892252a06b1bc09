/* SPDX-License-Identifier: MIT */
/*
 * The fixed test keys of the JWT and Authorization drivers (header-only, as
 * each driver is its own executable): an HS256 key whose 64 bytes the
 * drivers also use to sign payloads themselves, and an ES256 key, written
 * once into a private temporary key directory and loaded with
 * jwtsign_keys_load() as tokend loads its own. The seed tokens of
 * fuzz/corpus/jwt/ and fuzz/corpus/auth/ are signed with these keys.
 */
#ifndef TOKEND_FUZZ_KEYS_H
#define TOKEND_FUZZ_KEYS_H

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokend/jwtsign.h"
#include "tokend/util.h"

#define FUZZ_HS_KID "00000000000000a1"
#define FUZZ_ES_KID "00000000000000e2"
/* "Now" for every check: 2027-01-15T08:00:00Z; seeds expire around it. */
#define FUZZ_NOW 1800000000

/* bytes 0x40..0x7f, base64url */
static const char fuzz_hs_b64[] =
	"QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl9gYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-fw";
static const char fuzz_es_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2YZymhCYqS4e7kfa\n"
	"fL2AOlHcdCcaclDtkXFSj8Pz63WhRANCAAQx9XhFTU0+NJS3RaXaeGHO4+qzWYTf\n"
	"EY6Uqrnx1uAG/RMDJ/EMtVi1U2FU1lWFjRH2POBeliZjtNEsTvfY8TF+\n"
	"-----END PRIVATE KEY-----\n";

static inline void fuzz_write(const char *dir, const char *name, const char *text)
{
	char p[512];
	int fd;

	snprintf(p, sizeof p, "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) != 0)
		abort();
}

/* Loads the two keys (the HS256 one signs) or aborts: a broken harness. */
static inline struct jwtsign_keys *fuzz_keys_load(void)
{
	char dir[] = "/tmp/tokend-fuzz-keys-XXXXXX";
	char err[256] = "";
	struct jwtsign_keys *keys = NULL;

	if (mkdtemp(dir) == NULL)
		abort();
	fuzz_write(dir, FUZZ_HS_KID ".HS256.key", fuzz_hs_b64);
	fuzz_write(dir, FUZZ_ES_KID ".ES256.key", fuzz_es_pem);
	fuzz_write(dir, "current", FUZZ_HS_KID "\n");
	if (jwtsign_keys_load(dir, "HS256", 0, &keys, err, sizeof err) != 0) {
		fprintf(stderr, "fuzz: keys: %s\n", err);
		abort();
	}
	/* Loaded: the files are no longer needed. */
	unlink((snprintf(err, sizeof err, "%s/%s", dir, FUZZ_HS_KID ".HS256.key"), err));
	unlink((snprintf(err, sizeof err, "%s/%s", dir, FUZZ_ES_KID ".ES256.key"), err));
	unlink((snprintf(err, sizeof err, "%s/current", dir), err));
	rmdir(dir);
	return keys;
}

/*
 * Writes "<header>.<payload>.<HS256 signature>" into out (cap bytes): the
 * signature computed here with OpenSSL's one-shot HMAC and the fixed key,
 * independently of jwtsign.c. header_b64 is used as is; payload is encoded.
 * Returns the length, or 0 if it does not fit.
 */
static inline size_t fuzz_sign_hs256(const char *header_b64, const unsigned char *payload,
				     size_t plen, char *out, size_t cap)
{
	unsigned char key[64], mac[32];
	size_t klen, n, hl = strlen(header_b64);
	unsigned maclen = 0;

	if (util_b64url_decode(fuzz_hs_b64, strlen(fuzz_hs_b64), key, sizeof key, &klen) != 0)
		abort();
	if (hl + 2 + (plen + 2) / 3 * 4 + 44 > cap)
		return 0;
	memcpy(out, header_b64, hl);
	n = hl;
	out[n++] = '.';
	n += util_b64url_encode(payload, plen, out + n, cap - n);
	if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)out, n, mac, &maclen) == NULL)
		abort();
	out[n++] = '.';
	n += util_b64url_encode(mac, maclen, out + n, cap - n);
	return n;
}

#endif
