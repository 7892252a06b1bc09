/* SPDX-License-Identifier: MIT */
/*
 * This module implements store.h once for every backend: it picks the
 * backend from the database setting (a path is SQLite, a postgresql:// URL
 * or a libpq conninfo is PostgreSQL) and holds the store's rules over the
 * row-level ops of backend.h: a login's session, rotation outcomes with the
 * grace window and the family revocation, logout, the absolute session
 * lifetime, the API-token cap, purge batching, and the session revocations
 * that disabling a user or changing a password brings. Each rule runs in one
 * write transaction of the backend; which rows it reads and writes, and in
 * what order, is decided here and nowhere else.
 */
#include "tokend/store.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/handle.h"
#include "tokend/err.h"

/* A postgresql:// or postgres:// URL, or a libpq conninfo ("key=value ..."). */
static bool is_postgres(const char *target)
{
	const char *p = target;

	if (strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0)
		return true;
	while (*p == ' ')
		p++;
	if (!islower((unsigned char)*p))
		return false;
	while (islower((unsigned char)*p) || *p == '_')
		p++;
	while (*p == ' ')
		p++;
	return *p == '=';
}

/* Each open store's id (struct store.id), from 1. */
static _Atomic uint64_t store_ids;

int store_open_backend(const struct store_backend *be, const char *target, long busy_timeout_ms,
		       struct store **out, char *errbuf, size_t errlen)
{
	struct store *st = calloc(1, sizeof(*st));
	int rc;

	*out = NULL;
	if (st == NULL)
		return TOKEND_ENOMEM;
	st->be = be;
	st->id = atomic_fetch_add(&store_ids, 1) + 1;
	rc = be->open(target, busy_timeout_ms, &st->db, errbuf, errlen);
	if (rc != 0) {
		free(st);
		return rc;
	}
	rc = store_ends_open(st);
	if (rc != 0) {
		store_close(&st);
		return rc;
	}
	*out = st;
	return 0;
}

int store_open(const char *target, long busy_timeout_ms, struct store **out, char *errbuf,
	       size_t errlen)
{
	const struct store_backend *be = is_postgres(target) ? &store_postgres_backend
							     : &store_sqlite_backend;

	return store_open_backend(be, target, busy_timeout_ms, out, errbuf, errlen);
}

void store_close(struct store **stp)
{
	struct store *st = stp ? *stp : NULL;

	if (st == NULL)
		return;
	store_ends_close(st);
	st->be->close(st->db);
	free(st);
	*stp = NULL;
}

const char *store_backend_name(const struct store *st)
{
	return st->be->name;
}

int store_ping(struct store *st, long timeout_ms)
{
	return st->be->ping(st->db, timeout_ms);
}

int store_read_begin(struct store *st)
{
	return st->be->read_begin(st->db);
}

void store_read_end(struct store *st)
{
	st->be->read_end(st->db);
}

int store_migrate(struct store *st, int *version, bool *fresh, char *errbuf, size_t errlen)
{
	return st->be->migrate(st->db, version, fresh, errbuf, errlen);
}

/* handle.h: ends tx; after the COMMIT, other processes' verify sees the ends. */
int store_end_sessions_commit(struct store *st, struct store_tx *tx, int rc)
{
	rc = st->be->write_end(tx, rc);
	if (rc == 0)
		store_ends_bump(st);
	return rc;
}

/* Users. */

int store_user_add(struct store *st, const char *username, const char *hash,
		   char uuid_out[UUID_STR_LEN])
{
	struct store_user u = {0};
	struct store_tx *tx;
	int rc;

	if (strlen(username) > STORE_NAME_MAX || strlen(hash) >= sizeof(u.password))
		return TOKEND_EINVAL;
	if (util_uuid_new(u.uuid) != 0)
		return TOKEND_ECRYPTO;
	memcpy(u.username, username, strlen(username) + 1);
	memcpy(u.password, hash, strlen(hash) + 1);
	u.is_active = true;
	u.created_at = util_now();
	rc = st->be->write_begin(st->db, &tx);
	if (rc != 0)
		goto out;
	rc = st->be->write_end(tx, st->be->user_add(tx, &u));
	if (rc == 0 && uuid_out != NULL)
		memcpy(uuid_out, u.uuid, UUID_STR_LEN);
out:
	OPENSSL_cleanse(u.password, sizeof(u.password));
	return rc;
}

int store_user_get_by_name(struct store *st, const char *username, struct store_user *out)
{
	return st->be->user_get(st->db, STORE_BY_NAME, username, out);
}

int store_user_get_by_uuid(struct store *st, const char *uuid, struct store_user *out)
{
	return st->be->user_get(st->db, STORE_BY_UUID, uuid, out);
}

int store_user_set_password(struct store *st, const char *uuid, const char *hash)
{
	struct store_tx *tx;
	int rc = st->be->write_begin(st->db, &tx);

	if (rc != 0)
		return rc;
	return st->be->write_end(tx, st->be->user_set_password(tx, uuid, hash));
}

int store_user_change_password(struct store *st, const char *uuid, const char *hash, int64_t now)
{
	struct store_tx *tx;
	int rc = st->be->write_begin(st->db, &tx);

	if (rc != 0)
		return rc;
	rc = st->be->user_set_password(tx, uuid, hash);
	/* A changed password ends every session: whoever knew the old one is out. */
	if (rc == 0)
		rc = st->be->sessions_end(tx, NULL, uuid, now, NULL);
	return store_end_sessions_commit(st, tx, rc);
}

int store_user_disable(struct store *st, const char *username, int64_t now, bool delete_api_tokens)
{
	char uuid[UUID_STR_LEN];
	struct store_tx *tx;
	int rc = st->be->write_begin(st->db, &tx);

	if (rc != 0)
		return rc;
	rc = st->be->user_uuid(tx, username, uuid);
	/* The sessions first, at now: then the schema's trigger that ends a
	 * disabled user's sessions (for other writers) finds none live. */
	if (rc == 0)
		rc = st->be->sessions_end(tx, NULL, uuid, now, NULL);
	if (rc == 0)
		rc = st->be->user_set_active(tx, uuid, false);
	if (rc == 0 && delete_api_tokens)
		rc = st->be->api_delete_all(tx, uuid, NULL);
	return store_end_sessions_commit(st, tx, rc);
}

int store_user_set_active(struct store *st, const char *username, bool active)
{
	char uuid[UUID_STR_LEN];
	struct store_tx *tx;
	int rc;

	if (!active) /* never without ending the sessions */
		return store_user_disable(st, username, util_now(), false);
	rc = st->be->write_begin(st->db, &tx);
	if (rc != 0)
		return rc;
	rc = st->be->user_uuid(tx, username, uuid);
	if (rc == 0)
		rc = st->be->user_set_active(tx, uuid, true);
	return st->be->write_end(tx, rc);
}

int store_user_delete(struct store *st, const char *username)
{
	char uuid[UUID_STR_LEN];
	struct store_tx *tx;
	int rc = st->be->write_begin(st->db, &tx);

	if (rc != 0)
		return rc;
	rc = st->be->user_uuid(tx, username, uuid);
	/* The sessions go with the user: the schema records their ends. */
	if (rc == 0)
		rc = st->be->user_delete(tx, uuid);
	return store_end_sessions_commit(st, tx, rc);
}

int store_user_list(struct store *st, int (*fn)(const struct store_user *u, void *arg), void *arg)
{
	return st->be->user_list(st->db, fn, arg);
}

/* Teams. */

int store_team_add(struct store *st, const char *name, char uuid_out[UUID_STR_LEN])
{
	struct store_team t = {0};
	struct store_tx *tx;
	int rc;

	if (strlen(name) > STORE_NAME_MAX)
		return TOKEND_EINVAL;
	if (util_uuid_new(t.uuid) != 0)
		return TOKEND_ECRYPTO;
	memcpy(t.name, name, strlen(name) + 1);
	t.created_at = util_now();
	rc = st->be->write_begin(st->db, &tx);
	if (rc != 0)
		return rc;
	rc = st->be->write_end(tx, st->be->team_add(tx, &t));
	if (rc == 0 && uuid_out != NULL)
		memcpy(uuid_out, t.uuid, UUID_STR_LEN);
	return rc;
}

int store_team_get(struct store *st, const char *team_ref, struct store_team *out)
{
	return st->be->team_get(st->db, NULL, team_ref, out);
}

int store_team_list(struct store *st, int (*fn)(const struct store_team *t, void *arg), void *arg)
{
	return st->be->team_list(st->db, fn, arg);
}

/* Adds (role) or removes (role NULL) username's membership of team_ref. */
static int member_change(struct store *st, const char *team_ref, const char *username,
			 const char *role)
{
	char user[UUID_STR_LEN];
	struct store_team team;
	struct store_tx *tx;
	int rc = st->be->write_begin(st->db, &tx);

	if (rc != 0)
		return rc;
	rc = st->be->team_get(st->db, tx, team_ref, &team);
	if (rc == 0)
		rc = st->be->user_uuid(tx, username, user);
	if (rc == 0 && role != NULL)
		rc = st->be->member_set(tx, team.uuid, user, role);
	else if (rc == 0)
		rc = st->be->member_remove(tx, team.uuid, user);
	/* Leaving a team deletes the tokens for it, as leaving a GitHub organisation. */
	if (rc == 0 && role == NULL)
		rc = st->be->api_delete_all(tx, user, team.uuid);
	return st->be->write_end(tx, rc);
}

int store_team_add_member(struct store *st, const char *team_ref, const char *username,
			  const char *role)
{
	if (strcmp(role, "member") != 0 && strcmp(role, "admin") != 0)
		return TOKEND_EINVAL;
	return member_change(st, team_ref, username, role);
}

int store_team_remove_member(struct store *st, const char *team_ref, const char *username)
{
	return member_change(st, team_ref, username, NULL);
}

int store_team_is_member(struct store *st, const char *team_uuid, const char *user_uuid,
			 bool *member)
{
	return st->be->member_is(st->db, team_uuid, user_uuid, member);
}

/* Sessions. */

int store_login_record(struct store *st, const struct store_refresh *r)
{
	struct store_tx *tx;
	int rc = st->be->write_begin(st->db, &tx);

	if (rc != 0)
		return rc;
	/* Refused unless the user is still active: the hash took its time. */
	rc = st->be->user_touch_login(tx, r->user_uuid, r->issued_at);
	if (rc == 0)
		rc = st->be->session_add(tx, r->family, r->user_uuid, r->issued_at);
	if (rc == 0)
		rc = st->be->refresh_add(tx, r);
	return st->be->write_end(tx, rc);
}

int store_session_state(struct store *st, const char *sid, const char *user_uuid,
			enum store_session *state)
{
	int rc;

	*state = STORE_SESSION_ENDED;
	/*
	 * A session this thread found live, and not ended since (the ends in
	 * memory say so), is not looked up again: a query and a read
	 * transaction fewer on every Bearer request (session_ends.c).
	 */
	rc = store_ends_live_known(st, sid, user_uuid);
	if (rc == 0) {
		*state = STORE_SESSION_LIVE;
		return 0;
	}
	if (rc != TOKEND_ENOTFOUND)
		return rc;
	rc = st->be->session_state(st->db, sid, user_uuid, state);
	if (rc == 0 && *state == STORE_SESSION_LIVE)
		store_ends_live_remember(st, sid, user_uuid);
	return rc;
}

int store_session_end(struct store *st, const char *sid, const char *user_uuid, int64_t now,
		      bool *ended)
{
	struct store_tx *tx;
	long n = 0;
	int rc;

	*ended = false;
	rc = st->be->write_begin(st->db, &tx);
	if (rc != 0)
		return rc;
	rc = st->be->sessions_end(tx, sid, user_uuid, now, &n);
	/* Another user's sid ends nothing, and must revoke nothing either. */
	if (rc == 0 && n == 0)
		rc = TOKEND_ENOTFOUND;
	rc = store_end_sessions_commit(st, tx, rc);
	if (rc == TOKEND_ENOTFOUND)
		return 0;
	*ended = rc == 0;
	return rc;
}

int store_user_sessions_end(struct store *st, const char *user_uuid, int64_t now, long *ended)
{
	struct store_tx *tx;
	long n = 0;
	int rc;

	if (ended != NULL)
		*ended = 0;
	rc = st->be->write_begin(st->db, &tx);
	if (rc != 0)
		return rc;
	rc = store_end_sessions_commit(st, tx, st->be->sessions_end(tx, NULL, user_uuid, now, &n));
	if (rc == 0 && ended != NULL)
		*ended = n;
	return rc;
}

/* Refresh tokens. */

/*
 * A used token within the grace window whose successor is still unused:
 * *replay (if not NULL) gets the successor's row.
 */
static bool in_grace(struct store *st, struct store_tx *tx, const struct store_refresh_state *rs,
		     int64_t now, long grace, struct store_refresh *replay)
{
	struct store_refresh tmp;

	return grace > 0 && now - rs->used_at <= grace && rs->replaced_by[0] != '\0' &&
	       st->be->refresh_row(tx, rs->replaced_by, replay ? replay : &tmp) == 0;
}

/*
 * The rotation's decision on state rs, inside tx: *outcome and, for
 * STORE_ROTATED, the rows written. *again = old was used by a concurrent
 * rotation between the read and the write (a backend that does not
 * serialise writers): read the state again and decide anew.
 */
static int rotate_step(struct store *st, struct store_tx *tx, const struct store_refresh_state *rs,
		       const char *old_jti, int64_t now, long grace, long session_lifetime,
		       struct store_refresh *next, struct store_refresh *replay,
		       enum store_rotation *outcome, bool *again)
{
	int rc;

	*again = false;
	memcpy(next->family, rs->family, UUID_STR_LEN);
	next->session_created_at = rs->session_created_at;
	if (!rs->active) {
		*outcome = STORE_INACTIVE;
		return 0;
	}
	if (rs->revoked) {
		*outcome = STORE_ENDED; /* revoked with its session: not a new theft */
		return 0;
	}
	/* However often it was refreshed, a session ends at its absolute limit. */
	if (session_lifetime > 0) {
		int64_t end = rs->session_created_at + session_lifetime;
		if (now >= end) {
			rc = st->be->sessions_end(tx, rs->family, rs->owner, now, NULL);
			if (rc == 0)
				*outcome = STORE_EXPIRED;
			return rc;
		}
		if (next->expires_at > end)
			next->expires_at = end;
	}
	if (rs->used) {
		if (in_grace(st, tx, rs, now, grace, replay)) {
			if (replay != NULL)
				replay->session_created_at = rs->session_created_at;
			*outcome = STORE_REPLAYED;
			return 0;
		}
		/* Theft: whoever holds the session's live tokens loses them too. */
		rc = st->be->sessions_end(tx, rs->family, rs->owner, now, NULL);
		if (rc == 0)
			*outcome = STORE_REUSED;
		return rc;
	}
	/* One conditional update: zero rows = another rotation used it first. */
	rc = st->be->refresh_use(tx, old_jti, now, next->jti);
	if (rc == TOKEND_ENOTFOUND) {
		*again = true;
		return 0;
	}
	if (rc == 0)
		rc = st->be->refresh_add(tx, next);
	if (rc == 0)
		*outcome = STORE_ROTATED;
	return rc;
}

/* A rotation's arguments, for its transaction's body (rotate_body). */
struct rotate_job {
	struct store *st;
	const char *old_jti, *user_uuid;
	int64_t now;
	long grace, session_lifetime;
	struct store_refresh *next, *replay;
	enum store_rotation *outcome;
	store_rotation_commit_fn fn;
	void *arg;
};

/* The rotation inside its transaction (write_run's body: any thread). */
static int rotate_body(struct store_tx *tx, void *p)
{
	struct rotate_job *j = p;
	struct store_refresh_state rs;
	bool again = true;
	int rc = 0;

	*j->outcome = STORE_UNKNOWN; /* a batch's rollback may run it again */
	/* Twice at most: the second read sees the concurrent rotation as used. */
	for (int i = 0; rc == 0 && again && i < 2; i++) {
		rc = j->st->be->refresh_state(tx, j->old_jti, &rs);
		/* A token must not name another's row. */
		if (rc != 0 || !rs.found || strcmp(rs.owner, j->user_uuid) != 0) {
			*j->outcome = STORE_UNKNOWN;
			again = false;
			break;
		}
		rc = rotate_step(j->st, tx, &rs, j->old_jti, j->now, j->grace, j->session_lifetime,
				 j->next, j->replay, j->outcome, &again);
	}
	if (rc == 0 && again)
		rc = TOKEND_EBUSY; /* the row changed twice under us: not a decision to make */
	if (rc == 0 && *j->outcome == STORE_ROTATED && j->fn != NULL)
		rc = j->fn(j->next, j->arg);
	return rc;
}

/* Runs body in a write transaction of its own (backend.h, write_run). */
static int write_run(struct store *st, int (*body)(struct store_tx *tx, void *arg), void *arg)
{
	struct store_tx *tx;
	int rc;

	if (st->be->write_run != NULL)
		return st->be->write_run(st->db, body, arg);
	rc = st->be->write_begin(st->db, &tx);
	return rc != 0 ? rc : st->be->write_end(tx, body(tx, arg));
}

int store_refresh_rotate_then(struct store *st, const char *old_jti, const char *user_uuid,
			      int64_t now, long grace, long session_lifetime,
			      struct store_refresh *next, struct store_refresh *replay,
			      enum store_rotation *outcome, store_rotation_commit_fn fn, void *arg)
{
	struct rotate_job j = {st,   old_jti, user_uuid, now, grace, session_lifetime,
			       next, replay,  outcome,   fn,  arg};
	int rc;

	*outcome = STORE_UNKNOWN;
	rc = write_run(st, rotate_body, &j);
	if (rc != 0 && *outcome == STORE_ROTATED)
		*outcome = STORE_UNKNOWN;
	/* A reuse or the session's end ended it: other processes' verify sees it. */
	if (rc == 0 && (*outcome == STORE_REUSED || *outcome == STORE_EXPIRED))
		store_ends_bump(st);
	return rc;
}

int store_refresh_rotate(struct store *st, const char *old_jti, const char *user_uuid, int64_t now,
			 long grace, long session_lifetime, struct store_refresh *next,
			 struct store_refresh *replay, enum store_rotation *outcome)
{
	return store_refresh_rotate_then(st, old_jti, user_uuid, now, grace, session_lifetime, next,
					 replay, outcome, NULL, NULL);
}

int store_refresh_logout(struct store *st, const char *jti, const char *user_uuid, int64_t now,
			 long grace, long session_lifetime, enum store_logout *outcome)
{
	struct store_refresh_state rs;
	struct store_tx *tx;
	bool standin;
	int rc;

	*outcome = STORE_LOGOUT_REFUSED;
	rc = st->be->write_begin(st->db, &tx);
	if (rc != 0)
		return rc;
	rc = st->be->refresh_state(tx, jti, &rs);
	/* Unknown, another's row, a disabled user, an ended session: refused. */
	if (rc != 0 || !rs.found || strcmp(rs.owner, user_uuid) != 0 || !rs.active || rs.revoked)
		goto out;
	if (session_lifetime > 0 && now >= rs.session_created_at + session_lifetime) {
		/* over already: end the row as a rotation would, and refuse */
		rc = st->be->sessions_end(tx, rs.family, rs.owner, now, NULL);
		goto out;
	}
	/* A used token stands for its successor inside the window; else theft.
	 * (Asked before the end, which revokes the successor.) */
	standin = !rs.used || in_grace(st, tx, &rs, now, grace, NULL);
	rc = st->be->sessions_end(tx, rs.family, rs.owner, now, NULL);
	if (rc == 0)
		*outcome = standin ? STORE_LOGOUT_ENDED : STORE_LOGOUT_REUSED;
out:
	rc = store_end_sessions_commit(st, tx, rc);
	if (rc != 0)
		*outcome = STORE_LOGOUT_REFUSED;
	return rc;
}

int store_refresh_live(struct store *st, const char *jti, const char *user_uuid, bool *live)
{
	*live = false;
	return st->be->refresh_live(st->db, jti, user_uuid, live);
}

/* Housekeeping. */

int store_purge(struct store *st, int64_t before, long limit, long *deleted)
{
	struct store_tx *tx;
	bool ended = false;
	int rc;

	*deleted = 0;
	rc = st->be->write_begin(st->db, &tx);
	if (rc != 0)
		return rc;
	for (int t = 0; rc == 0 && t < STORE_PURGE_TABLES; t++) {
		long n = 0;
		/* The log of ended sessions is kept a day past the tokens it covers. */
		int64_t due = t == STORE_PURGE_SESSION_ENDS ? before - STORE_SESSION_ENDS_KEEP
							    : before;
		rc = st->be->purge(tx, (enum store_purge_table)t, due, limit, &n);
		if (t != STORE_PURGE_SESSION_ENDS)
			*deleted += n;
		/* A live session goes with its last refresh row: it ends. */
		if (t == STORE_PURGE_REFRESH && n > 0)
			ended = true;
	}
	rc = ended ? store_end_sessions_commit(st, tx, rc) : st->be->write_end(tx, rc);
	if (rc != 0)
		*deleted = 0;
	return rc;
}

int store_key_in_use(struct store *st, const char *kid, int64_t now, long access_lifetime,
		     bool *in_use)
{
	*in_use = true; /* fail safe: a key is not retired on an error */
	return st->be->key_in_use(st->db, kid, now, access_lifetime, in_use);
}

/* API tokens. */

static void api_digest(const char *token, unsigned char digest[32])
{
	SHA256((const unsigned char *)token, strlen(token), digest);
}

struct api_add_job {
	struct store *st;
	const struct store_api_token *row;
	long cap;
};

/* Count and insert share the transaction: concurrent issues never pass the cap. */
static int api_add_body(struct store_tx *tx, void *p)
{
	struct api_add_job *j = p;
	long live = 0;
	int rc = j->st->be->api_count(tx, j->row->user_uuid, j->row->team_uuid, j->row->issued_at,
				      &live);

	if (rc == 0 && live >= j->cap)
		rc = TOKEND_ECONFLICT;
	return rc != 0 ? rc : j->st->be->api_add(tx, j->row);
}

int store_api_token_add(struct store *st, const struct store_api_token *t, const char *token,
			long cap)
{
	struct store_api_token row = *t;
	struct api_add_job j = {st, &row, cap};

	api_digest(token, row.digest);
	return write_run(st, api_add_body, &j);
}

int store_api_token_version(struct store *st, const char *team_uuid, const char *user_uuid,
			    bool *member, int64_t *version)
{
	struct store_commit_mark mark;
	bool marked;
	int rc;

	*member = false;
	*version = 0;
	if (store_listing_memo_get(st, team_uuid, user_uuid, member, version))
		return 0;
	/* Read before the lookup: a commit in between only voids the memo. */
	marked = st->be->commit_mark != NULL && st->be->commit_mark(st->db, &mark);
	rc = st->be->api_version(st->db, team_uuid, user_uuid, member, version);
	if (rc == 0 && marked)
		store_listing_memo_put(st, team_uuid, user_uuid, &mark, *member, *version);
	return rc;
}

int store_api_token_list(struct store *st, const char *user_uuid, const char *team_uuid,
			 int64_t now, int (*fn)(const struct store_api_token *t, void *arg),
			 void *arg)
{
	return st->be->api_list(st->db, user_uuid, team_uuid, now, fn, arg);
}

int store_api_token_find(struct store *st, const char *token, char jti[UUID_STR_LEN])
{
	unsigned char digest[32];

	api_digest(token, digest);
	return st->be->api_by_digest(st->db, digest, jti);
}

struct api_delete_job {
	struct store *st;
	const char *user_uuid, *team_uuid;
	int64_t now;
	const char *const *jtis;
	size_t n;
	long count;
};

static int api_delete_body(struct store_tx *tx, void *p)
{
	struct api_delete_job *j = p;
	int rc = 0;

	j->count = 0; /* a batch's rollback may run it again */
	for (size_t i = 0; rc == 0 && i < j->n; i++)
		rc = j->st->be->api_delete(tx, j->jtis[i], j->user_uuid, j->team_uuid, j->now,
					   &j->count);
	return rc;
}

int store_api_token_delete(struct store *st, const char *user_uuid, const char *team_uuid,
			   int64_t now, const char *const *jtis, size_t n, long *deleted)
{
	struct api_delete_job j = {st, user_uuid, team_uuid, now, jtis, n, 0};
	int rc = write_run(st, api_delete_body, &j);

	*deleted = rc == 0 ? j.count : 0;
	return rc;
}

int store_api_token_live(struct store *st, const char *jti, const char *user_uuid,
			 const char *team_uuid, bool *live)
{
	*live = false;
	return st->be->api_live(st->db, jti, user_uuid, team_uuid, live);
}
