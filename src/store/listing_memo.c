/* SPDX-License-Identifier: MIT */
/*
 * This module implements the memo of token listing versions: what
 * store_api_token_version found for a (user, team), kept per thread, so
 * that a token list served from the handlers' cache (its key is that
 * version) needs no database at all. A memo holds while the backend's
 * commit mark (backend.h: SQLite's WAL-index header, which every commit of
 * every process rewrites) is the one read before its lookup, and for at
 * most a second anyway. Backends without a mark (PostgreSQL) look up every
 * time. With it, a list request whose body is cached reads no database:
 * the lookup, its read transaction and SQLite's two fcntl() locks were a
 * quarter of such a request's server time (perf).
 */
#include <string.h>

#include "store/handle.h"
#include "tokend/util.h"

#define MEMO_SLOTS 64
#define MEMO_MAX_US 1000000 /* bounds a mark that stopped moving (see sqlite/conn.c) */

struct memo {
	uint64_t store_id;             /* 0: empty */
	struct store_commit_mark mark; /* read before the lookup */
	uint64_t taken_us;
	char user[UUID_STR_LEN];
	char team[UUID_STR_LEN];
	bool member;
	int64_t version;
};

static _Thread_local struct memo memos[MEMO_SLOTS];

static struct memo *memo_slot(const char *team, const char *user)
{
	/* FNV-1a over both uuids: a few nanoseconds for 72 bytes. */
	uint32_t h = 2166136261u;

	for (const char *s = team; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	for (const char *s = user; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return &memos[h % MEMO_SLOTS];
}

bool store_listing_memo_get(struct store *st, const char *team, const char *user, bool *member,
			    int64_t *version)
{
	struct store_commit_mark now;
	struct memo *m;

	if (st->be->commit_mark == NULL)
		return false;
	m = memo_slot(team, user);
	if (m->store_id != st->id || strcmp(m->team, team) != 0 || strcmp(m->user, user) != 0 ||
	    util_mono_us() - m->taken_us >= MEMO_MAX_US || !st->be->commit_mark(st->db, &now) ||
	    memcmp(&now, &m->mark, sizeof(now)) != 0)
		return false;
	*member = m->member;
	*version = m->version;
	return true;
}

void store_listing_memo_put(struct store *st, const char *team, const char *user,
			    const struct store_commit_mark *mark, bool member, int64_t version)
{
	struct memo *m;

	if (strlen(team) >= UUID_STR_LEN || strlen(user) >= UUID_STR_LEN)
		return;
	m = memo_slot(team, user);
	m->store_id = st->id;
	m->mark = *mark;
	m->taken_us = util_mono_us();
	memcpy(m->team, team, strlen(team) + 1);
	memcpy(m->user, user, strlen(user) + 1);
	m->member = member;
	m->version = version;
}
