/* SPDX-License-Identifier: MIT */
/*
 * This module implements the backend-neutral half of the session-end cache
 * (session_cache.h): an open-addressing hash set of the sessions that ended
 * lately, and the counter that processes sharing a database bump after each
 * commit that may end a session.
 *
 * The set is probed linearly and kept at most half full; it never deletes
 * in place (no tombstones): a prune rebuilds it from the ends still inside
 * the horizon. A session id is a random (v4) uuid, so its first eight bytes
 * are already a good hash once mixed. The ids ended within one access-token
 * lifetime are few (32 bytes each, twice that with the slack), and verify
 * reads them under a read lock, one probe or two.
 *
 * The counter lives in "<database>-ends", eight bytes mmap'd MAP_SHARED: a
 * process that bumps it with an atomic add is seen by every other process's
 * next atomic load, without a system call on either side (x86-64 and arm64
 * do 64-bit atomics lock-free on shared memory).
 */
#include "store/session_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokend/err.h"
#include "tokend/log.h"

#define SET_MIN_SLOTS 64

_Static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0),
	       "the shared counter needs lock-free 64-bit atomics");

struct slot {
	unsigned char id[SESSION_ID_LEN];
	int64_t ended_at;
	bool used;
};

struct session_set {
	pthread_rwlock_t lock;
	struct slot *slots; /* nslots, a power of two */
	size_t nslots;
	size_t count;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool session_id_parse(const char *sid, unsigned char out[SESSION_ID_LEN])
{
	size_t n = 0;

	for (int i = 0; i < 36; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (sid[i] != '-')
				return false;
			continue;
		}
		hi = hexval(sid[i]);
		lo = hi < 0 ? -1 : hexval(sid[i + 1]);
		if (lo < 0)
			return false;
		out[n++] = (unsigned char)(hi << 4 | lo);
		i++;
	}
	return sid[36] == '\0';
}

static size_t slot_of(const unsigned char id[SESSION_ID_LEN], size_t nslots)
{
	uint64_t h;

	memcpy(&h, id, sizeof(h));
	h ^= h >> 33; /* murmur3's finaliser */
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)h & (nslots - 1);
}

/* Inserts into slots (not full); the later ended_at wins. */
static void slots_put(struct slot *slots, size_t nslots, size_t *count,
		      const unsigned char id[SESSION_ID_LEN], int64_t ended_at)
{
	size_t i = slot_of(id, nslots);

	while (slots[i].used) {
		if (memcmp(slots[i].id, id, SESSION_ID_LEN) == 0) {
			if (ended_at > slots[i].ended_at)
				slots[i].ended_at = ended_at;
			return;
		}
		i = (i + 1) & (nslots - 1);
	}
	memcpy(slots[i].id, id, SESSION_ID_LEN);
	slots[i].ended_at = ended_at;
	slots[i].used = true;
	(*count)++;
}

/* Rebuilds set into nslots slots, keeping the ends at or after keep_from. */
static int set_rebuild(struct session_set *set, size_t nslots, int64_t keep_from)
{
	struct slot *slots = calloc(nslots, sizeof(*slots));
	size_t count = 0;

	if (slots == NULL)
		return TOKEND_ENOMEM;
	for (size_t i = 0; i < set->nslots; i++) {
		if (set->slots[i].used && set->slots[i].ended_at >= keep_from)
			slots_put(slots, nslots, &count, set->slots[i].id, set->slots[i].ended_at);
	}
	free(set->slots);
	set->slots = slots;
	set->nslots = nslots;
	set->count = count;
	return 0;
}

struct session_set *session_set_new(void)
{
	struct session_set *set = calloc(1, sizeof(*set));

	if (set == NULL)
		return NULL;
	set->slots = calloc(SET_MIN_SLOTS, sizeof(*set->slots));
	if (set->slots == NULL || pthread_rwlock_init(&set->lock, NULL) != 0) {
		free(set->slots);
		free(set);
		return NULL;
	}
	set->nslots = SET_MIN_SLOTS;
	return set;
}

void session_set_free(struct session_set **setp)
{
	struct session_set *set = setp ? *setp : NULL;

	if (set == NULL)
		return;
	pthread_rwlock_destroy(&set->lock);
	free(set->slots);
	free(set);
	*setp = NULL;
}

int session_set_add(struct session_set *set, const struct session_end *ends, size_t n)
{
	int rc = 0;

	pthread_rwlock_wrlock(&set->lock);
	for (size_t i = 0; i < n; i++) {
		if (2 * (set->count + 1) > set->nslots) {
			rc = set_rebuild(set, 2 * set->nslots, INT64_MIN);
			if (rc != 0)
				break;
		}
		slots_put(set->slots, set->nslots, &set->count, ends[i].id, ends[i].ended_at);
	}
	pthread_rwlock_unlock(&set->lock);
	return rc;
}

bool session_set_has(struct session_set *set, const unsigned char id[SESSION_ID_LEN])
{
	bool found = false;
	size_t i;

	pthread_rwlock_rdlock(&set->lock);
	for (i = slot_of(id, set->nslots); set->slots[i].used; i = (i + 1) & (set->nslots - 1)) {
		if (memcmp(set->slots[i].id, id, SESSION_ID_LEN) == 0) {
			found = true;
			break;
		}
	}
	pthread_rwlock_unlock(&set->lock);
	return found;
}

size_t session_set_prune(struct session_set *set, int64_t before)
{
	size_t left, keep = 0, nslots = SET_MIN_SLOTS;

	pthread_rwlock_wrlock(&set->lock);
	for (size_t i = 0; i < set->nslots; i++)
		keep += set->slots[i].used && set->slots[i].ended_at >= before;
	while (nslots < 2 * keep)
		nslots *= 2;
	/* Out of memory: keep the old table (stale ends only cost memory). */
	(void)set_rebuild(set, nslots, before);
	left = set->count;
	pthread_rwlock_unlock(&set->lock);
	return left;
}

size_t session_set_count(struct session_set *set)
{
	size_t n;

	pthread_rwlock_rdlock(&set->lock);
	n = set->count;
	pthread_rwlock_unlock(&set->lock);
	return n;
}

struct session_counter {
	uint64_t *value; /* mapped: the file's first eight bytes, or anonymous */
	bool shared;
};

/* Maps the counter file of db_path; NULL if it cannot (logged, or *oom). */
static uint64_t *counter_map_file(const char *db_path, bool *oom)
{
	static atomic_bool warned;
	/* Beside the file itself, as SQLite puts its -wal and -shm: two
	 * processes reaching it through different links share one counter. */
	char *real = realpath(db_path, NULL);
	const char *db = real ? real : db_path;
	size_t n = strlen(db);
	char *path = malloc(n + sizeof("-ends"));
	uint64_t *p = NULL;
	struct stat sb;
	int fd = -1;

	if (path == NULL) {
		free(real);
		*oom = true;
		return NULL;
	}
	errno = 0;
	memcpy(path, db, n);
	memcpy(path + n, "-ends", sizeof("-ends"));
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
		goto fail;
	/* Two processes creating it at once both extend it to the same size. */
	if (sb.st_size < (off_t)sizeof(uint64_t) && ftruncate(fd, sizeof(uint64_t)) != 0)
		goto fail;
	p = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		p = NULL;
		goto fail;
	}
	goto out;
fail:
	if (!atomic_exchange(&warned, true))
		log_warn("store: %s: %s; sessions ended by another process are seen within "
			 "a second only",
			 path, errno ? strerror(errno) : "not a regular file");
out:
	if (fd >= 0)
		close(fd);
	free(path);
	free(real);
	return p;
}

struct session_counter *session_counter_open(const char *db_path)
{
	struct session_counter *c = calloc(1, sizeof(*c));
	bool oom = false;

	if (c == NULL)
		return NULL;
	if (db_path[0] != '\0' && strcmp(db_path, ":memory:") != 0)
		c->value = counter_map_file(db_path, &oom);
	if (oom) { /* not a reason to share nothing for the process's life */
		free(c);
		return NULL;
	}
	c->shared = c->value != NULL;
	if (c->value == NULL) {
		c->value = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c->value == MAP_FAILED) {
			free(c);
			return NULL;
		}
	}
	return c;
}

void session_counter_close(struct session_counter **cp)
{
	struct session_counter *c = cp ? *cp : NULL;

	if (c == NULL)
		return;
	munmap(c->value, sizeof(uint64_t));
	free(c);
	*cp = NULL;
}

uint64_t session_counter_get(const struct session_counter *c)
{
	return __atomic_load_n(c->value, __ATOMIC_ACQUIRE);
}

void session_counter_bump(struct session_counter *c)
{
	(void)__atomic_add_fetch(c->value, 1, __ATOMIC_SEQ_CST);
}

bool session_counter_shared(const struct session_counter *c)
{
	return c->shared;
}
