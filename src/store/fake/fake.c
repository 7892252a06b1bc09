/* SPDX-License-Identifier: MIT */
/*
 * This module implements src/store/backend.h in memory, for unit tests: the
 * tables of sql/sqlite/ as arrays in insertion (rowid) order, scanned linearly.
 * Each op means what the SQLite backend's statement means (the stmt_sql of
 * src/store/sqlite/), including what the triggers add: the
 * version bumps of sql/003 on every insert and delete of an API token, the
 * session deleted with its last refresh row (sql/004), the cascades of a
 * user's delete. It also keeps the session_ends log as the triggers of
 * wip-cache's sql/005_session_ends.sql do: a row for each live session
 * that is ended or deleted; a user's disable ends its live sessions.
 *
 * Transactions copy the committed state at write_begin and work on the
 * copy; write_end publishes it (commit) or drops it (rollback), so a
 * failed transaction leaves nothing behind. One mutex per database, held
 * from write_begin to write_end, serialises writers as SQLite's BEGIN
 * IMMEDIATE does. Readers never wait for a writer: they read the committed
 * state under a second, briefly held mutex, as a SQLite reader on its own
 * connection reads the last commit (a writer's own lookups outside its
 * transaction do not see it either). Read snapshots are not kept: each
 * lookup reads the latest commit.
 *
 * This file holds the lifecycle, the transactions, users, teams and
 * sessions, and the ops table; fake_tokens.c the token ops, fake_rows.c
 * the tables. A session_ends row's ended_at is the op's now, or the wall
 * clock for the ops that take none (a delete, a disable).
 */
#include "store/fake/fake.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/fake/fake_internal.h"
#include "store/migrations.h"
#include "tokend/err.h"
#include "tokend/util.h"

/* Lifecycle. */

static int fake_open(const char *target, long busy_timeout_ms, struct store_db **out, char *errbuf,
		     size_t errlen)
{
	struct store_db *db = calloc(1, sizeof(*db));

	(void)target;
	(void)busy_timeout_ms;
	*out = NULL;
	if (db == NULL || (db->committed = fake_state_new()) == NULL) {
		free(db);
		if (errlen > 0)
			fake_put(errbuf, errlen, "fake: out of memory");
		return TOKEND_ENOMEM;
	}
	pthread_mutex_init(&db->write_lock, NULL);
	pthread_mutex_init(&db->state_lock, NULL);
	*out = db;
	return 0;
}

static void fake_close(struct store_db *db)
{
	if (db == NULL)
		return;
	fake_state_free(db->committed);
	pthread_mutex_destroy(&db->write_lock);
	pthread_mutex_destroy(&db->state_lock);
	free(db);
}

static int fake_ping(struct store_db *db, long timeout_ms)
{
	(void)db;
	(void)timeout_ms;
	return 0;
}

/* The schema is the structs: migrating only records the version in force. */
static int fake_migrate(struct store_db *db, int *version, bool *fresh, char *errbuf, size_t errlen)
{
	int latest = store_migration_count ? store_migrations[store_migration_count - 1].version
					   : 0;

	(void)errbuf;
	(void)errlen;
	pthread_mutex_lock(&db->write_lock);
	pthread_mutex_lock(&db->state_lock);
	if (fresh != NULL)
		*fresh = db->committed->version == 0;
	db->committed->version = latest;
	pthread_mutex_unlock(&db->state_lock);
	pthread_mutex_unlock(&db->write_lock);
	if (version != NULL)
		*version = latest;
	return 0;
}

static const char *fake_local_path(struct store_db *db)
{
	(void)db;
	return "";
}

/* Transactions. */

static int fake_read_begin(struct store_db *db)
{
	(void)db;
	return 0;
}

static void fake_read_end(struct store_db *db)
{
	(void)db;
}

static int fake_write_begin(struct store_db *db, struct store_tx **out)
{
	struct store_tx *tx = calloc(1, sizeof(*tx));

	*out = NULL;
	if (tx == NULL)
		return TOKEND_ENOMEM;
	pthread_mutex_lock(&db->write_lock);
	/* Only a writer replaces committed, and we are the writer now. */
	tx->work = fake_state_copy(db->committed);
	if (tx->work == NULL) {
		pthread_mutex_unlock(&db->write_lock);
		free(tx);
		return TOKEND_ENOMEM;
	}
	tx->db = db;
	*out = tx;
	return 0;
}

static int fake_write_end(struct store_tx *tx, int rc)
{
	struct store_db *db = tx->db;
	struct fstate *old = tx->work;

	if (rc == 0) {
		pthread_mutex_lock(&db->state_lock);
		old = db->committed;
		db->committed = tx->work;
		pthread_mutex_unlock(&db->state_lock);
	}
	fake_state_free(old);
	pthread_mutex_unlock(&db->write_lock);
	free(tx);
	return rc;
}

/* Users. */

static int fake_user_add(struct store_tx *tx, const struct store_user *u)
{
	struct fstate *s = tx->work;
	struct fuser *r;

	if (fake_user_find(s, u->uuid) != NULL || fake_user_by_name(s, u->username) != NULL)
		return TOKEND_EEXISTS;
	r = fake_row_push(s, T_USERS);
	if (r == NULL)
		return TOKEND_ENOMEM;
	PUT(r->u.uuid, u->uuid);
	PUT(r->u.username, u->username);
	PUT(r->u.password, u->password);
	r->u.is_active = true; /* as S_USER_ADD: a new user is active */
	r->u.created_at = u->created_at;
	r->u.last_login = 0;
	return 0;
}

static int fake_user_get(struct store_db *db, enum store_user_key by, const char *key,
			 struct store_user *out)
{
	const struct fstate *s = fake_read(db);
	const struct fuser *r = by == STORE_BY_NAME ? fake_user_by_name(s, key)
						    : fake_user_find(s, key);
	int rc = TOKEND_ENOTFOUND;

	if (r != NULL) {
		*out = r->u;
		if (by != STORE_BY_NAME)
			out->password[0] = '\0';
		rc = 0;
	}
	fake_unread(db);
	return rc;
}

static int fake_user_uuid(struct store_tx *tx, const char *username, char out[UUID_STR_LEN])
{
	const struct fuser *r = fake_user_by_name(tx->work, username);

	if (r == NULL)
		return TOKEND_ENOTFOUND;
	memcpy(out, r->u.uuid, UUID_STR_LEN);
	return 0;
}

static int fake_user_set_password(struct store_tx *tx, const char *uuid, const char *hash)
{
	struct fuser *r = fake_user_find(tx->work, uuid);

	if (r == NULL)
		return TOKEND_ENOTFOUND;
	PUT(r->u.password, hash);
	return 0;
}

/*
 * A user going inactive ends its live sessions, whoever disables it: the
 * trigger users_disabled_sessions_end of wip-cache's sql/005_session_ends.sql
 * sets their revoked_at to the wall clock (their refresh rows stay as they
 * are) and each end is logged. store_user_disable's sessions_end then finds
 * none live, and revokes the refresh rows.
 */
static int fake_user_set_active(struct store_tx *tx, const char *uuid, bool active)
{
	struct fstate *s = tx->work;
	struct fuser *r = fake_user_find(s, uuid);
	int rc = 0;

	if (r == NULL)
		return TOKEND_ENOTFOUND;
	if (r->u.is_active && !active) {
		int64_t now = util_now();
		for (size_t i = 0; rc == 0 && i < NROWS(s, T_SESSIONS); i++) {
			struct fsession *se = ROW(s, T_SESSIONS, struct fsession, i);
			if (se->revoked || !fake_eq(se->user, uuid))
				continue;
			se->revoked = true;
			se->revoked_at = now;
			rc = fake_ends_log(s, se->id, now);
		}
	}
	r->u.is_active = active;
	return rc;
}

static int fake_user_touch_login(struct store_tx *tx, const char *uuid, int64_t now)
{
	struct fuser *r = fake_user_find(tx->work, uuid);

	if (r == NULL || !r->u.is_active)
		return TOKEND_ENOTFOUND;
	r->u.last_login = now;
	return 0;
}

/* ON DELETE CASCADE of every table that names the user, with their triggers. */
static int fake_user_delete(struct store_tx *tx, const char *uuid)
{
	struct fstate *s = tx->work;
	int rc = 0;
	size_t i;

	if (fake_user_find(s, uuid) == NULL)
		return TOKEND_ENOTFOUND;
	for (i = 0; i < NROWS(s, T_MEMBERS);)
		if (fake_eq(ROW(s, T_MEMBERS, struct fmember, i)->user, uuid))
			fake_row_del(s, T_MEMBERS, i);
		else
			i++;
	for (i = 0; rc == 0 && i < NROWS(s, T_SESSIONS);)
		if (fake_eq(ROW(s, T_SESSIONS, struct fsession, i)->user, uuid))
			rc = fake_session_del_row(s, i, util_now());
		else
			i++;
	for (i = 0; rc == 0 && i < NROWS(s, T_REFRESH);)
		if (fake_eq(ROW(s, T_REFRESH, struct frefresh, i)->r.user_uuid, uuid))
			rc = fake_refresh_del_row(s, i);
		else
			i++;
	for (i = 0; rc == 0 && i < NROWS(s, T_API);)
		if (fake_eq(ROW(s, T_API, struct store_api_token, i)->user_uuid, uuid))
			rc = fake_api_del_row(s, i);
		else
			i++;
	for (i = 0; i < NROWS(s, T_USERS); i++)
		if (fake_eq(ROW(s, T_USERS, struct fuser, i)->u.uuid, uuid))
			break;
	if (rc == 0)
		fake_row_del(s, T_USERS, i);
	return rc;
}

static int fake_user_count(struct store_db *db, long *count)
{
	*count = (long)NROWS(fake_read(db), T_USERS);
	fake_unread(db);
	return 0;
}

static int by_username(const void *a, const void *b)
{
	return strcmp(((const struct fuser *)a)->u.username, ((const struct fuser *)b)->u.username);
}

static int fake_user_list(struct store_db *db, int (*fn)(const struct store_user *u, void *arg),
			  void *arg)
{
	size_t n;
	struct fuser *v = fake_snapshot(db, T_USERS, by_username, &n);

	if (v == NULL)
		return TOKEND_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i].u.password[0] = '\0';
		if (fn(&v[i].u, arg) != 0)
			break;
	}
	free(v);
	return 0;
}

/* Teams. */

static int fake_team_add(struct store_tx *tx, const struct store_team *t)
{
	struct fstate *s = tx->work;
	struct fteam *r;

	for (size_t i = 0; i < NROWS(s, T_TEAMS); i++) {
		r = ROW(s, T_TEAMS, struct fteam, i);
		if (fake_eq(r->uuid, t->uuid) || fake_eq(r->name, t->name))
			return TOKEND_EEXISTS;
	}
	r = fake_row_push(s, T_TEAMS);
	if (r == NULL)
		return TOKEND_ENOMEM;
	PUT(r->uuid, t->uuid);
	PUT(r->name, t->name);
	r->created_at = t->created_at;
	return 0;
}

static void team_out(const struct fstate *s, const struct fteam *r, struct store_team *out)
{
	memset(out, 0, sizeof(*out));
	PUT(out->uuid, r->uuid);
	PUT(out->name, r->name);
	out->created_at = r->created_at;
	for (size_t i = 0; i < NROWS(s, T_MEMBERS); i++)
		if (fake_eq(ROW(s, T_MEMBERS, struct fmember, i)->team, r->uuid))
			out->members++;
}

static int fake_team_get(struct store_db *db, struct store_tx *tx, const char *ref,
			 struct store_team *out)
{
	const struct fstate *s = tx ? tx->work : fake_read(db);
	const struct fteam *r = fake_team_find(s, ref);
	int rc = 0;

	for (size_t i = 0; r == NULL && i < NROWS(s, T_TEAMS); i++)
		if (fake_eq(ROW(s, T_TEAMS, struct fteam, i)->name, ref))
			r = ROW(s, T_TEAMS, struct fteam, i);
	if (r != NULL)
		team_out(s, r, out);
	else
		rc = TOKEND_ENOTFOUND;
	if (tx == NULL)
		fake_unread(db);
	return rc;
}

static int fake_team_list(struct store_db *db, int (*fn)(const struct store_team *t, void *arg),
			  void *arg)
{
	const struct fstate *s = fake_read(db);
	size_t n = NROWS(s, T_TEAMS);
	struct store_team *v = malloc(n ? n * sizeof(*v) : 1);

	if (v != NULL)
		for (size_t i = 0; i < n; i++)
			team_out(s, ROW(s, T_TEAMS, struct fteam, i), &v[i]);
	fake_unread(db);
	if (v == NULL)
		return TOKEND_ENOMEM;
	/* ORDER BY name: struct store_team's name is where a fuser's username
	 * is not, so sort by hand. */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(v[j - 1].name, v[j].name) > 0; j--) {
			struct store_team t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++)
		if (fn(&v[i], arg) != 0)
			break;
	free(v);
	return 0;
}

static int fake_member_set(struct store_tx *tx, const char *team_uuid, const char *user_uuid,
			   const char *role)
{
	struct fstate *s = tx->work;
	struct fmember *m;

	if (!fake_eq(role, "member") && !fake_eq(role, "admin"))
		return TOKEND_EDB; /* the CHECK constraint */
	if (fake_team_find(s, team_uuid) == NULL || fake_user_find(s, user_uuid) == NULL)
		return TOKEND_ENOTFOUND; /* the foreign keys */
	m = fake_member_find(s, team_uuid, user_uuid);
	if (m == NULL) {
		m = fake_row_push(s, T_MEMBERS);
		if (m == NULL)
			return TOKEND_ENOMEM;
		PUT(m->team, team_uuid);
		PUT(m->user, user_uuid);
	}
	PUT(m->role, role);
	return 0;
}

static int fake_member_remove(struct store_tx *tx, const char *team_uuid, const char *user_uuid)
{
	struct fstate *s = tx->work;

	for (size_t i = 0; i < NROWS(s, T_MEMBERS); i++) {
		const struct fmember *m = ROW(s, T_MEMBERS, struct fmember, i);
		if (fake_eq(m->team, team_uuid) && fake_eq(m->user, user_uuid)) {
			fake_row_del(s, T_MEMBERS, i);
			return 0;
		}
	}
	return TOKEND_ENOTFOUND;
}

static int fake_member_is(struct store_db *db, const char *team_uuid, const char *user_uuid,
			  bool *member)
{
	*member = fake_member_find(fake_read(db), team_uuid, user_uuid) != NULL;
	fake_unread(db);
	return 0;
}

/* Sessions. */

static int fake_session_add(struct store_tx *tx, const char *sid, const char *user_uuid,
			    int64_t created_at)
{
	struct fstate *s = tx->work;
	struct fsession *se;

	if (fake_session_find(s, sid) != NULL)
		return TOKEND_EEXISTS;
	if (fake_user_find(s, user_uuid) == NULL)
		return TOKEND_ENOTFOUND;
	se = fake_row_push(s, T_SESSIONS);
	if (se == NULL)
		return TOKEND_ENOMEM;
	PUT(se->id, sid);
	PUT(se->user, user_uuid);
	se->created_at = created_at;
	return 0;
}

static int fake_session_state(struct store_db *db, const char *sid, const char *user_uuid,
			      enum store_session *state)
{
	const struct fstate *s = fake_read(db);
	const struct fuser *u = fake_user_find(s, user_uuid);
	const struct fsession *se = fake_session_find(s, sid);

	if (u == NULL)
		*state = STORE_SESSION_NO_USER;
	else if (!u->u.is_active)
		*state = STORE_SESSION_INACTIVE;
	else if (se != NULL && fake_eq(se->user, user_uuid) && !se->revoked)
		*state = STORE_SESSION_LIVE;
	else
		*state = STORE_SESSION_ENDED;
	fake_unread(db);
	return 0;
}

/* *ended = no session sid is recorded (never, or purged), or it has ended. */
static int fake_session_ended(struct store_db *db, const char *sid, bool *ended)
{
	const struct fsession *se = fake_session_find(fake_read(db), sid);

	*ended = se == NULL || se->revoked;
	fake_unread(db);
	return 0;
}

/*
 * As store_db_sessions_end: the refresh rows first (S_REFRESH_REVOKE: every
 * row of family sid, whoever owns it; S_USER_REFRESH_REVOKE: the unrevoked
 * rows of every session of the user, ended or not), then the sessions.
 */
static int fake_sessions_end(struct store_tx *tx, const char *sid, const char *user_uuid,
			     int64_t now, long *ended)
{
	struct fstate *s = tx->work;
	long n = 0;
	int rc = 0;

	for (size_t i = 0; i < NROWS(s, T_REFRESH); i++) {
		struct frefresh *r = ROW(s, T_REFRESH, struct frefresh, i);
		bool hit;
		if (sid != NULL) {
			hit = fake_eq(r->r.family, sid);
		} else {
			const struct fsession *se = fake_session_find(s, r->r.family);
			hit = !r->revoked && se != NULL && fake_eq(se->user, user_uuid);
		}
		if (!hit)
			continue;
		r->revoked = true;
		if (!r->used) {
			r->used = true;
			r->used_at = now;
		}
	}
	for (size_t i = 0; rc == 0 && i < NROWS(s, T_SESSIONS); i++) {
		struct fsession *se = ROW(s, T_SESSIONS, struct fsession, i);
		if (se->revoked || !fake_eq(se->user, user_uuid) ||
		    (sid != NULL && !fake_eq(se->id, sid)))
			continue;
		se->revoked = true;
		se->revoked_at = now;
		n++;
		rc = fake_ends_log(s, se->id, now);
	}
	if (ended != NULL)
		*ended = rc == 0 ? n : 0;
	return rc;
}

static int fake_session_ends_since(struct store_db *db, int64_t after, store_session_end_fn fn,
				   void *arg)
{
	size_t n;
	struct fend *v = fake_snapshot(db, T_ENDS, NULL, &n);

	if (v == NULL)
		return TOKEND_ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (v[i].seq > after && fn(v[i].seq, v[i].sid, v[i].ended_at, arg) != 0)
			break;
	free(v);
	return 0;
}

const struct store_backend store_fake_backend = {
	.name = "fake",
	.single_host = true,
	.open = fake_open,
	.close = fake_close,
	.ping = fake_ping,
	.migrate = fake_migrate,
	.local_path = fake_local_path,
	.read_begin = fake_read_begin,
	.read_end = fake_read_end,
	.write_begin = fake_write_begin,
	.write_end = fake_write_end,
	.user_add = fake_user_add,
	.user_get = fake_user_get,
	.user_uuid = fake_user_uuid,
	.user_set_password = fake_user_set_password,
	.user_set_active = fake_user_set_active,
	.user_touch_login = fake_user_touch_login,
	.user_delete = fake_user_delete,
	.user_count = fake_user_count,
	.user_list = fake_user_list,
	.team_add = fake_team_add,
	.team_get = fake_team_get,
	.team_list = fake_team_list,
	.member_set = fake_member_set,
	.member_remove = fake_member_remove,
	.member_is = fake_member_is,
	.session_add = fake_session_add,
	.session_state = fake_session_state,
	.session_ended = fake_session_ended,
	.sessions_end = fake_sessions_end,
	.session_ends_since = fake_session_ends_since,
	.refresh_add = fake_refresh_add,
	.refresh_state = fake_refresh_state,
	.refresh_row = fake_refresh_row,
	.refresh_use = fake_refresh_use,
	.refresh_live = fake_refresh_live,
	.api_count = fake_api_count,
	.api_add = fake_api_add,
	.api_version = fake_api_version,
	.api_list = fake_api_list,
	.api_by_digest = fake_api_by_digest,
	.api_delete = fake_api_delete,
	.api_delete_all = fake_api_delete_all,
	.api_live = fake_api_live,
	.purge = fake_purge,
	.key_in_use = fake_key_in_use,
};
