/* SPDX-License-Identifier: MIT */
/*
 * This header is the contract of the signing keys (src/crypto/keys.c, the
 * reload in keys_reload.c). Keys live in files of a key directory (0700),
 * one per key, named "<kid>.<alg>.key" (0600): an HS256 file holds 64
 * random bytes as base64url text on one line (the HMAC key is the decoded
 * bytes); an RS256 or ES256 file holds a PEM private key, parsed once at
 * load into an EVP_PKEY. The file "current" names the kid that signs; every
 * other key is published and accepted. Keys never enter the database.
 * Minting and checking with them is tokend/jwtsign.h.
 *
 * Every function here is thread-safe; jwtsign_keys_reload() swaps the whole
 * key set atomically while minting and checking go on.
 */
#ifndef TOKEND_KEYS_H
#define TOKEND_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWTSIGN_KID_LEN 16 /* hex characters of a key id */
#define JWTSIGN_HS_KEY_BYTES 64
#define JWTSIGN_MAX_KEYS 64

struct jwtsign_keys; /* opaque: the loaded keys and which one signs */

/* One key, as `tokend key list` shows it. */
struct jwtsign_key_info {
	char kid[JWTSIGN_KID_LEN + 1];
	char alg[8];
	int64_t created; /* the file's mtime */
	bool current;
};

/* True for "HS256", "RS256" and "ES256". */
bool jwtsign_alg_supported(const char *alg);

/*
 * Loads every key file of dir. When there is none and create is true, makes
 * dir (0700) and a first key of algorithm alg (0600) and makes it current.
 * The signing key is the one "current" names, else the newest file. On
 * success *out owns the keys (jwtsign_keys_free). Errors: TOKEND_ENOTFOUND
 * (no key and !create), TOKEND_EINVAL (bad algorithm, malformed or short key,
 * a key file readable by others, a key directory writable by group or
 * others, a key file or directory owned by another user than the effective
 * one or root), TOKEND_EIO, TOKEND_ECRYPTO; errbuf says which file and why.
 */
int jwtsign_keys_load(const char *dir, const char *alg, int create, struct jwtsign_keys **out,
		      char *errbuf, size_t errlen);

/*
 * Re-reads the key directory and, if it loads cleanly, swaps the key set
 * atomically; on error the old set stays and errbuf says why.
 */
int jwtsign_keys_reload(struct jwtsign_keys *keys, char *errbuf, size_t errlen);

/* What made a running server look at its key directory again. */
enum jwtsign_reload_why {
	JWTSIGN_RELOAD_SIGNAL,      /* SIGHUP: always re-read */
	JWTSIGN_RELOAD_POLL,        /* the periodic check: re-read on a change */
	JWTSIGN_RELOAD_UNKNOWN_KID, /* a token of a kid not loaded (see below) */
	JWTSIGN_RELOAD_N
};

/*
 * Looks at the key directory again and, when it changed (SIGNAL: always),
 * re-reads and swaps it in as jwtsign_keys_reload() does, logging what
 * changed (keys added and retired, the signing key). A failing read keeps
 * the old keys and is logged: for POLL and UNKNOWN_KID once per distinct
 * error, for SIGNAL every time. When "current" names a kid the directory
 * lacks (say, a copy that brought "current" before the key file), the key
 * that signed before keeps signing and an error is logged. UNKNOWN_KID
 * passes at most once a second per key set, whatever the number of threads
 * asking: the others return 0 at once. Serialised against each other; never
 * blocks minting or checking but for the swap. Returns 1 when a new set was
 * swapped in, 0 when nothing changed (or the gate was closed), or a
 * negative error when the directory could not be read.
 */
int jwtsign_keys_refresh(struct jwtsign_keys *keys, enum jwtsign_reload_why why);

/*
 * With on set, jwtsign_check() of a token whose kid (16 hex) is not loaded
 * calls jwtsign_keys_refresh(UNKNOWN_KID) and checks it once more with the
 * new set. Off by default (the CLI's one-shot loads); serve turns it on
 * before its threads start.
 */
void jwtsign_keys_reload_on_unknown(struct jwtsign_keys *keys, bool on);

/* Counts reloads: what was minted with an older count may have changed. */
unsigned jwtsign_keys_generation(const struct jwtsign_keys *keys);

/* Frees the keys (wiping secrets) and clears *keys; accepts NULL. */
void jwtsign_keys_free(struct jwtsign_keys **keys);

/* The kid of the signing key; valid until the next reload (for logs). */
const char *jwtsign_current_kid(const struct jwtsign_keys *keys);

/* Copies the kid of the signing key into out, safe against a reload. */
void jwtsign_signing_kid(struct jwtsign_keys *keys, char out[JWTSIGN_KID_LEN + 1]);

/* Lists the loaded keys into out (up to max); returns how many. */
size_t jwtsign_keys_list(struct jwtsign_keys *keys, struct jwtsign_key_info *out, size_t max);

/*
 * Creates a new key of alg in dir and makes it current (the "current" file
 * is replaced atomically). kid_out gets its kid. A running server picks it up
 * by its periodic check, on a token of the new kid, or on SIGHUP. Errors: TOKEND_EINVAL (also an unsafe dir, as for
 * jwtsign_keys_load), TOKEND_EIO, TOKEND_ECRYPTO.
 */
int jwtsign_key_rotate(const char *dir, const char *alg, char kid_out[JWTSIGN_KID_LEN + 1],
		       char *errbuf, size_t errlen);

/*
 * Creates a new key of alg in dir without making it current: it is
 * published (JWKS) and accepted by every server that reads dir, and signs
 * only after jwtsign_key_use(). When "current" is absent or malformed it is
 * first written to name the key that signs now, so that the new (newest)
 * key does not start signing; in a directory without keys the new key is
 * made current. Errors as jwtsign_key_rotate().
 */
int jwtsign_key_add(const char *dir, const char *alg, char kid_out[JWTSIGN_KID_LEN + 1],
		    char *errbuf, size_t errlen);

/*
 * Makes kid the signing key of dir (the "current" file, replaced
 * atomically), once the whole directory loads as a server would read it.
 * TOKEND_ENOTFOUND when dir has no key kid; the errors of
 * jwtsign_keys_load() when dir does not load.
 */
int jwtsign_key_use(const char *dir, const char *kid, char *errbuf, size_t errlen);

/*
 * Deletes the key file of kid from dir. Refuses the current key
 * (TOKEND_ECONFLICT). TOKEND_ENOTFOUND if there is no such key,
 * TOKEND_EINVAL if dir is unsafe (as for jwtsign_keys_load).
 */
int jwtsign_key_retire(const char *dir, const char *kid, char *errbuf, size_t errlen);

#endif
