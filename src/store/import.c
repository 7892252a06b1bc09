/* SPDX-License-Identifier: MIT */
/*
 * This module implements store_user_import() for every backend: users
 * brought over from another system (tokend user import), a batch per write
 * transaction over backend.h's ops, so that a batch is written whole or not
 * at all. What an existing user was is read before the transaction (the
 * batch's teams resolved once each); an update that changes a password or
 * disables the user ends its sessions, as the operator's commands do.
 */
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/handle.h"
#include "tokend/err.h"

/* What an existing user was just before an import batch's transaction. */
struct import_prior {
	bool found;
	bool same_hash;
	bool active;
	uint64_t member; /* bit j: already a member of the user's teams[j] */
};

/*
 * The teams a batch names, resolved once each: team_get also counts the
 * team's members, which once per imported user made an import of N members
 * cost N^2 (20,000 users into one team took 12 s, 100,000 minutes).
 */
#define IMPORT_TEAM_CACHE 32

struct team_cache {
	size_t n;
	struct {
		const char *ref;
		char uuid[UUID_STR_LEN];
	} e[IMPORT_TEAM_CACHE];
};

/* team_get (db, or tx when not NULL) through the batch's cache. */
static int team_resolve(struct store *st, struct store_tx *tx, struct team_cache *c,
			const char *ref, char uuid[UUID_STR_LEN])
{
	struct store_team team;
	int rc;

	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->e[i].ref, ref) == 0) {
			memcpy(uuid, c->e[i].uuid, UUID_STR_LEN);
			return 0;
		}
	rc = st->be->team_get(st->db, tx, ref, &team);
	if (rc != 0)
		return rc;
	memcpy(uuid, team.uuid, UUID_STR_LEN);
	if (c->n < IMPORT_TEAM_CACHE) {
		c->e[c->n].ref = ref;
		memcpy(c->e[c->n].uuid, team.uuid, UUID_STR_LEN);
		c->n++;
	}
	return 0;
}

static int import_check(const struct store_import *u)
{
	const struct store_user *row = NULL;

	if (strlen(u->username) > STORE_NAME_MAX || strlen(u->hash) >= sizeof(row->password) ||
	    u->n_teams > STORE_IMPORT_TEAMS_MAX)
		return TOKEND_EINVAL;
	return 0;
}

/*
 * Reads, outside the transaction, what an update compares with: a re-run of
 * the same file then writes nothing and ends no session.
 */
static int import_read_prior(struct store *st, const struct store_import *u,
			     struct team_cache *teams, struct import_prior *p)
{
	struct store_user row;
	char team[UUID_STR_LEN];
	int rc = st->be->user_get(st->db, STORE_BY_NAME, u->username, &row);

	memset(p, 0, sizeof(*p));
	if (rc == TOKEND_ENOTFOUND)
		rc = 0;
	else if (rc == 0) {
		p->found = true;
		p->same_hash = strcmp(row.password, u->hash) == 0;
		p->active = row.is_active;
		for (size_t j = 0; j < u->n_teams && rc == 0; j++) {
			bool member = false;

			rc = team_resolve(st, NULL, teams, u->teams[j], team);
			if (rc == TOKEND_ENOTFOUND) {
				rc = 0; /* the transaction reports it */
				continue;
			}
			if (rc == 0)
				rc = st->be->member_is(st->db, team, row.uuid, &member);
			if (member)
				p->member |= (uint64_t)1 << j;
		}
	}
	OPENSSL_cleanse(row.password, sizeof(row.password));
	return rc;
}

/* One user of a batch, inside tx. *ended: a session may have ended. */
static int import_one(struct store *st, struct store_tx *tx, const struct store_import *u,
		      const struct import_prior *p, bool update, int64_t now,
		      struct team_cache *teams, struct store_import_counts *c, bool *ended)
{
	struct store_user row = {0};
	char team[UUID_STR_LEN];
	bool added = false, changed = false;
	int rc = st->be->user_uuid(tx, u->username, row.uuid);

	if (rc == TOKEND_ENOTFOUND) {
		if (util_uuid_new(row.uuid) != 0)
			return TOKEND_ECRYPTO;
		memcpy(row.username, u->username, strlen(u->username) + 1);
		memcpy(row.password, u->hash, strlen(u->hash) + 1);
		row.is_active = u->is_active;
		row.created_at = now;
		rc = st->be->user_add(tx, &row);
		OPENSSL_cleanse(row.password, sizeof(row.password));
		/* user_add's contract does not promise is_active (the fake makes
		 * every new user active): a disabled user is disabled after it. */
		if (rc == 0 && !u->is_active)
			rc = st->be->user_set_active(tx, row.uuid, false);
		added = true;
	} else if (rc == 0 && !update) {
		rc = TOKEND_EEXISTS;
	} else if (rc == 0) {
		/* As store_user_change_password: whoever knew the old one is out. */
		if (!p->found || !p->same_hash) {
			rc = st->be->user_set_password(tx, row.uuid, u->hash);
			if (rc == 0)
				rc = st->be->sessions_end(tx, NULL, row.uuid, now, NULL);
			changed = *ended = true;
		}
		/* As store_user_disable: the sessions first, then the flag. */
		if (rc == 0 && (!p->found || p->active != u->is_active)) {
			if (!u->is_active) {
				rc = st->be->sessions_end(tx, NULL, row.uuid, now, NULL);
				*ended = true;
			}
			if (rc == 0)
				rc = st->be->user_set_active(tx, row.uuid, u->is_active);
			changed = true;
		}
	}
	for (size_t j = 0; j < u->n_teams && rc == 0; j++) {
		rc = team_resolve(st, tx, teams, u->teams[j], team);
		if (rc == 0 && (added || !p->found || !(p->member & ((uint64_t)1 << j)))) {
			rc = st->be->member_set(tx, team, row.uuid, "member");
			changed = true;
		}
	}
	if (rc == 0) {
		if (added)
			c->added++;
		else if (changed)
			c->updated++;
		else
			c->skipped++;
	}
	return rc;
}

int store_user_import(struct store *st, const struct store_import *users, size_t n, bool update,
		      int64_t now, struct store_import_counts *counts, size_t *failed)
{
	struct store_import_counts c = {0, 0, 0};
	struct import_prior *prior = NULL;
	static const struct import_prior none;
	struct team_cache teams = {0};
	struct store_tx *tx;
	bool ended = false;
	size_t i = 0;
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++)
		rc = import_check(&users[i]);
	if (rc != 0) {
		i--;
		goto out;
	}
	if (update && n > 0) {
		prior = calloc(n, sizeof(*prior));
		if (prior == NULL) {
			i = 0;
			rc = TOKEND_ENOMEM;
			goto out;
		}
		for (i = 0; i < n && rc == 0; i++)
			rc = import_read_prior(st, &users[i], &teams, &prior[i]);
		if (rc != 0) {
			i--;
			goto out;
		}
	}
	i = 0;
	teams.n = 0; /* resolved again inside the transaction */
	rc = st->be->write_begin(st->db, &tx);
	if (rc != 0)
		goto out;
	for (i = 0; i < n && rc == 0; i++)
		rc = import_one(st, tx, &users[i], prior ? &prior[i] : &none, update, now, &teams,
				&c, &ended);
	if (rc != 0)
		i--;
	rc = ended ? store_end_sessions_commit(st, tx, rc) : st->be->write_end(tx, rc);
	if (rc == 0 && counts != NULL) {
		counts->added += c.added;
		counts->updated += c.updated;
		counts->skipped += c.skipped;
	}
out:
	if (failed != NULL)
		*failed = i;
	free(prior);
	return rc;
}
