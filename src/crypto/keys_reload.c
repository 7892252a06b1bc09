/* SPDX-License-Identifier: MIT */
/*
 * This module implements the reload of a running server's keys (issue 13,
 * "Keys across instances"): on SIGHUP, on a periodic check of the key
 * directory, and on a token of a kid that is not loaded, so that a key
 * copied into every machine's directory reaches every instance without a
 * signal. A check costs one readdir and an fstatat per entry (the
 * directory's fingerprint, keys.c); only a change re-reads and parses the
 * keys. The new set is built aside and swapped under the write lock, as
 * SIGHUP always did: checks and mints in flight keep the set they hold.
 * A set that does not load is never swapped in, so a half-written key
 * file, an unsafe directory or one that vanished leave the old keys, and
 * the set is never empty. The unknown-kid path is gated to one look per
 * second with a compare-and-swap, so a flood of invented kids costs one
 * readdir a second and never queues on a lock.
 */
#include "tokend/keys.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "crypto/keys.h"
#include "tokend/err.h"
#include "tokend/log.h"
#include "tokend/metrics.h"

static const char *const why_names[JWTSIGN_RELOAD_N] = {"SIGHUP", "key directory check",
							"unknown kid"};

bool keys_gate_pass(atomic_llong *next_ms, int64_t now_ms, int64_t gap_ms)
{
	long long next = atomic_load(next_ms);

	if (now_ms < next)
		return false;
	/* One winner per gap: a loser saw next moved on by it. */
	return atomic_compare_exchange_strong(next_ms, &next, (long long)(now_ms + gap_ms));
}

/* Appends the kids of a that b lacks to out (space-separated); returns how many. */
static size_t missing(const struct keyset *a, const struct keyset *b, char *out, size_t outlen)
{
	size_t n = 0;

	for (size_t i = 0; i < a->count; i++) {
		size_t len = strlen(out);
		if (keys_find(b, a->keys[i].kid) != NULL)
			continue;
		snprintf(out + len, outlen - len, "%s%s", n ? " " : "", a->keys[i].kid);
		n++;
	}
	return n;
}

const char *keys_diff(const struct keyset *old, const struct keyset *new, char *out, size_t outlen)
{
	const char *was = old->keys[old->current].kid;
	const char *now = new->keys[new->current].kid;
	char added[JWTSIGN_MAX_KEYS * (JWTSIGN_KID_LEN + 1) + 1] = "";
	char retired[sizeof(added)] = "";
	size_t na = missing(new, old, added, sizeof(added));
	size_t nr = missing(old, new, retired, sizeof(retired));
	bool signer = strcmp(was, now) != 0;

	if (na == 0 && nr == 0 && !signer) {
		snprintf(out, outlen, "no key changed");
		return out;
	}
	snprintf(out, outlen, "%s%s%s%s%s%s%s%s%s", na ? "added " : "", added,
		 na && (nr || signer) ? "; " : "", nr ? "retired " : "", retired,
		 nr && signer ? "; " : "", signer ? "signing " : "", signer ? was : "",
		 signer ? " -> " : "");
	if (signer) {
		size_t len = strlen(out);
		snprintf(out + len, outlen - len, "%s", now);
	}
	return out;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Reads the directory (its fingerprint fp taken before) and swaps the new
 * set in; under reload_lock. warn gets a complaint about a "current" that
 * names a missing key ("" if none), changes what changed.
 */
static int reload_locked(struct jwtsign_keys *ks, uint64_t fp, char *errbuf, size_t errlen,
			 char *warn, size_t warnlen, char *changes, size_t chlen)
{
	struct keyset *set = NULL;
	struct keyset *old;
	int rc = keys_read_dir(ks->dir, ks->alg, 0, &set, errbuf, errlen);

	warn[0] = '\0';
	changes[0] = '\0';
	ks->tried_fp = fp;
	if (rc != 0)
		return rc;
	old = ks->set; /* only reloads replace it, and they hold reload_lock */
	if (set->named[0] != '\0' && keys_find(set, set->named) == NULL) {
		/* Keep signing with the old key while the directory has it. */
		const struct key *keep = keys_find(set, old->keys[old->current].kid);
		if (keep != NULL)
			set->current = (size_t)(keep - set->keys);
		snprintf(warn, warnlen,
			 "%s/current names key %s, which the directory lacks; signing with %s",
			 ks->dir, set->named, set->keys[set->current].kid);
	}
	keys_diff(old, set, changes, chlen);
	pthread_rwlock_wrlock(&ks->lock);
	ks->set = set;
	memcpy(ks->current_kid, set->keys[set->current].kid, sizeof(ks->current_kid));
	atomic_fetch_add(&ks->generation, 1);
	pthread_rwlock_unlock(&ks->lock);
	keys_set_free(old);
	ks->loaded_fp = fp;
	return 0;
}

int jwtsign_keys_reload(struct jwtsign_keys *keys, char *errbuf, size_t errlen)
{
	char warn[640], changes[512]; /* warn: a 511-byte dir and two kids */
	uint64_t fp = keys_dir_fingerprint(keys->dir);
	int rc;

	pthread_mutex_lock(&keys->reload_lock);
	rc = reload_locked(keys, fp, errbuf, errlen, warn, sizeof(warn), changes, sizeof(changes));
	if (rc == 0)
		keys->last_err[0] = '\0';
	pthread_mutex_unlock(&keys->reload_lock);
	return rc;
}

int jwtsign_keys_refresh(struct jwtsign_keys *keys, enum jwtsign_reload_why why)
{
	char err[512], warn[640], changes[512];
	const char *name = why_names[why];
	uint64_t fp;
	bool read = false;
	int rc = 0;

	if (why == JWTSIGN_RELOAD_UNKNOWN_KID &&
	    !keys_gate_pass(&keys->unknown_next_ms, mono_ms(), KEYS_UNKNOWN_GAP_MS))
		return 0;
	pthread_mutex_lock(&keys->reload_lock);
	fp = keys_dir_fingerprint(keys->dir);
	/*
	 * The periodic check retries only a changed directory (a broken one is
	 * read once); an unknown kid re-reads any directory other than the one
	 * loaded, so a transient failure is retried, once a second at most.
	 */
	if (why == JWTSIGN_RELOAD_SIGNAL ||
	    fp != (why == JWTSIGN_RELOAD_POLL ? keys->tried_fp : keys->loaded_fp)) {
		read = true;
		rc = reload_locked(keys, fp, err, sizeof(err), warn, sizeof(warn), changes,
				   sizeof(changes));
	}
	if (!read) {
		/* nothing to say */
	} else if (rc != 0) {
		if (why == JWTSIGN_RELOAD_SIGNAL)
			log_error("SIGHUP: keys not reloaded, the old ones stay: %s", err);
		else if (strcmp(err, keys->last_err) != 0)
			log_error("keys (%s): not reloaded, the old ones stay: %s", name, err);
		snprintf(keys->last_err, sizeof(keys->last_err), "%s", err);
	} else {
		if (warn[0] != '\0')
			log_error("keys (%s): %s", name, warn);
		if (why == JWTSIGN_RELOAD_SIGNAL)
			log_info("SIGHUP: keys reloaded; signing with %s (%s)", keys->current_kid,
				 changes);
		else if (strcmp(changes, "no key changed") == 0 && keys->last_err[0] == '\0')
			log_debug("keys (%s): re-read %s: %s", name, keys->dir, changes);
		else
			log_info("keys (%s): reloaded %s: %s%s%s", name, keys->dir, changes,
				 strstr(changes, " -> ") ? "" : "; signing with ",
				 strstr(changes, " -> ") ? "" : keys->current_kid);
		keys->last_err[0] = '\0';
		rc = 1;
	}
	pthread_mutex_unlock(&keys->reload_lock);
	metrics_key_check((enum metrics_key_check)why, read, read && rc == 1);
	return rc;
}

void jwtsign_keys_reload_on_unknown(struct jwtsign_keys *keys, bool on)
{
	keys->unknown_reload = on;
}
