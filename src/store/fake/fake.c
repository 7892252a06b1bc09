/* SPDX-License-Identifier: MIT */
/*
 * This module implements src/store/backend.h in memory, for unit tests: the
 * tables of sql/ as arrays in insertion (rowid) order, scanned linearly.
 * Each op means what the SQLite backend's statement means (store_sqlite.c's
 * stmt_sql, at the time of writing), including what the triggers add: the
 * version bumps of sql/003 on every insert and delete of an API token, the
 * session deleted with its last refresh row (sql/004), the cascades of a
 * user's delete. It also keeps the session_ends log: a row for each live
 * session that is ended, deleted, or whose user is disabled.
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
 */
#include "store/fake/fake.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/migrations.h"
#include "tokend/err.h"
#include "tokend/util.h"

/* A growable array of fixed-size rows, kept in insertion order. */
struct vec {
	unsigned char *v;
	size_t n, cap, size;
};

struct fuser {
	struct store_user u; /* password kept; last_login 0 = NULL */
};

struct fteam {
	char uuid[UUID_STR_LEN];
	char name[STORE_NAME_MAX + 1];
	int64_t created_at;
};

struct fmember {
	char team[UUID_STR_LEN];
	char user[UUID_STR_LEN];
	char role[8];
};

struct fsession {
	char id[UUID_STR_LEN];
	char user[UUID_STR_LEN];
	int64_t created_at;
	bool revoked; /* revoked_at IS NOT NULL */
	int64_t revoked_at;
};

struct frefresh {
	struct store_refresh r; /* session_created_at unused */
	bool used;              /* used_at IS NOT NULL */
	int64_t used_at;
	char replaced_by[UUID_STR_LEN]; /* "" = NULL */
	bool revoked;
};

struct fversion {
	char user[UUID_STR_LEN];
	char team[UUID_STR_LEN];
	int64_t version;
};

struct fend {
	int64_t seq;
	char sid[UUID_STR_LEN];
	int64_t ended_at;
};

/* The tables. struct store_api_token rows keep name "" for NULL. */
enum { T_USERS, T_TEAMS, T_MEMBERS, T_SESSIONS, T_REFRESH, T_API, T_VERSIONS, T_ENDS, T_N };

static const size_t row_size[T_N] = {
	[T_USERS] = sizeof(struct fuser),
	[T_TEAMS] = sizeof(struct fteam),
	[T_MEMBERS] = sizeof(struct fmember),
	[T_SESSIONS] = sizeof(struct fsession),
	[T_REFRESH] = sizeof(struct frefresh),
	[T_API] = sizeof(struct store_api_token),
	[T_VERSIONS] = sizeof(struct fversion),
	[T_ENDS] = sizeof(struct fend),
};

struct fstate {
	struct vec t[T_N];
	int64_t next_seq; /* of session_ends */
	int version;      /* the migration in force; 0 = never migrated */
};

struct store_db {
	pthread_mutex_t write_lock; /* held from write_begin to write_end */
	pthread_mutex_t state_lock; /* guards the pointer committed */
	struct fstate *committed;
};

struct store_tx {
	struct store_db *db;
	struct fstate *work; /* the transaction's copy */
};

#define ROW(s, tab, type, i) ((type *)(void *)((s)->t[tab].v + (i) * (s)->t[tab].size))
#define NROWS(s, tab) ((s)->t[tab].n)

/* A zeroed new row at the end of table tab, or NULL (out of memory). */
static void *row_push(struct fstate *s, int tab)
{
	struct vec *a = &s->t[tab];

	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		unsigned char *v = realloc(a->v, cap * a->size);
		if (v == NULL)
			return NULL;
		a->v = v;
		a->cap = cap;
	}
	memset(a->v + a->n * a->size, 0, a->size);
	return a->v + a->n++ * a->size;
}

/* Removes row i of table tab, keeping the others in order. */
static void row_del(struct fstate *s, int tab, size_t i)
{
	struct vec *a = &s->t[tab];

	memmove(a->v + i * a->size, a->v + (i + 1) * a->size, (a->n - i - 1) * a->size);
	a->n--;
}

static void state_free(struct fstate *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < T_N; i++)
		free(s->t[i].v);
	free(s);
}

static struct fstate *state_new(void)
{
	struct fstate *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	for (int i = 0; i < T_N; i++)
		s->t[i].size = row_size[i];
	s->next_seq = 1;
	return s;
}

/* A deep copy of src, or NULL. */
static struct fstate *state_copy(const struct fstate *src)
{
	struct fstate *s = state_new();

	if (s == NULL)
		return NULL;
	s->next_seq = src->next_seq;
	s->version = src->version;
	for (int i = 0; i < T_N; i++) {
		const struct vec *a = &src->t[i];
		if (a->n == 0)
			continue;
		s->t[i].v = malloc(a->n * a->size);
		if (s->t[i].v == NULL) {
			state_free(s);
			return NULL;
		}
		memcpy(s->t[i].v, a->v, a->n * a->size);
		s->t[i].n = s->t[i].cap = a->n;
	}
	return s;
}

/* Read access to the last commit: db_read() ... db_unread(). */
static const struct fstate *db_read(struct store_db *db)
{
	pthread_mutex_lock(&db->state_lock);
	return db->committed;
}

static void db_unread(struct store_db *db)
{
	pthread_mutex_unlock(&db->state_lock);
}

static bool eq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

/* Copies a NUL-terminated string into a fixed buffer, cut as snprintf would. */
static void put(char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);

	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}
#define PUT(dst, src) put((dst), sizeof(dst), (src))

static struct fuser *user_find(const struct fstate *s, const char *uuid)
{
	for (size_t i = 0; i < NROWS(s, T_USERS); i++)
		if (eq(ROW(s, T_USERS, struct fuser, i)->u.uuid, uuid))
			return ROW(s, T_USERS, struct fuser, i);
	return NULL;
}

static struct fuser *user_by_name(const struct fstate *s, const char *name)
{
	for (size_t i = 0; i < NROWS(s, T_USERS); i++)
		if (eq(ROW(s, T_USERS, struct fuser, i)->u.username, name))
			return ROW(s, T_USERS, struct fuser, i);
	return NULL;
}

static struct fteam *team_find(const struct fstate *s, const char *uuid)
{
	for (size_t i = 0; i < NROWS(s, T_TEAMS); i++)
		if (eq(ROW(s, T_TEAMS, struct fteam, i)->uuid, uuid))
			return ROW(s, T_TEAMS, struct fteam, i);
	return NULL;
}

static struct fmember *member_find(const struct fstate *s, const char *team, const char *user)
{
	for (size_t i = 0; i < NROWS(s, T_MEMBERS); i++) {
		struct fmember *m = ROW(s, T_MEMBERS, struct fmember, i);
		if (eq(m->team, team) && eq(m->user, user))
			return m;
	}
	return NULL;
}

static struct fsession *session_find(const struct fstate *s, const char *id)
{
	for (size_t i = 0; i < NROWS(s, T_SESSIONS); i++)
		if (eq(ROW(s, T_SESSIONS, struct fsession, i)->id, id))
			return ROW(s, T_SESSIONS, struct fsession, i);
	return NULL;
}

static struct frefresh *refresh_find(const struct fstate *s, const char *jti)
{
	for (size_t i = 0; i < NROWS(s, T_REFRESH); i++)
		if (eq(ROW(s, T_REFRESH, struct frefresh, i)->r.jti, jti))
			return ROW(s, T_REFRESH, struct frefresh, i);
	return NULL;
}

/* Appends a session_ends row. */
static int ends_log(struct fstate *s, const char *sid, int64_t at)
{
	struct fend *e = row_push(s, T_ENDS);

	if (e == NULL)
		return TOKEND_ENOMEM;
	e->seq = s->next_seq++;
	PUT(e->sid, sid);
	e->ended_at = at;
	return 0;
}

/* The version trigger of sql/003: (user, team) goes to 1 or one up. */
static int version_bump(struct fstate *s, const char *user, const char *team)
{
	struct fversion *v;

	for (size_t i = 0; i < NROWS(s, T_VERSIONS); i++) {
		v = ROW(s, T_VERSIONS, struct fversion, i);
		if (eq(v->user, user) && eq(v->team, team)) {
			v->version++;
			return 0;
		}
	}
	v = row_push(s, T_VERSIONS);
	if (v == NULL)
		return TOKEND_ENOMEM;
	PUT(v->user, user);
	PUT(v->team, team);
	v->version = 1;
	return 0;
}

/* Deletes API token row i, bumping its pair's version (sql/003). */
static int api_del_row(struct fstate *s, size_t i)
{
	struct store_api_token t = *ROW(s, T_API, struct store_api_token, i);

	row_del(s, T_API, i);
	return version_bump(s, t.user_uuid, t.team_uuid);
}

/* Deletes session row i; a live one is logged as ended at `at`. */
static int session_del_row(struct fstate *s, size_t i, int64_t at)
{
	struct fsession se = *ROW(s, T_SESSIONS, struct fsession, i);

	row_del(s, T_SESSIONS, i);
	return se.revoked ? 0 : ends_log(s, se.id, at);
}

/* Deletes refresh row i; the session goes with its family's last row (sql/004). */
static int refresh_del_row(struct fstate *s, size_t i)
{
	char family[UUID_STR_LEN];

	PUT(family, ROW(s, T_REFRESH, struct frefresh, i)->r.family);
	row_del(s, T_REFRESH, i);
	for (size_t j = 0; j < NROWS(s, T_REFRESH); j++)
		if (eq(ROW(s, T_REFRESH, struct frefresh, j)->r.family, family))
			return 0;
	for (size_t j = 0; j < NROWS(s, T_SESSIONS); j++)
		if (eq(ROW(s, T_SESSIONS, struct fsession, j)->id, family))
			return session_del_row(s, j, util_now());
	return 0;
}

/* Lifecycle. */

static int fake_open(const char *target, long busy_timeout_ms, struct store_db **out,
		     char *errbuf, size_t errlen)
{
	struct store_db *db = calloc(1, sizeof(*db));

	(void)target;
	(void)busy_timeout_ms;
	*out = NULL;
	if (db == NULL || (db->committed = state_new()) == NULL) {
		free(db);
		if (errlen > 0)
			put(errbuf, errlen, "fake: out of memory");
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
	state_free(db->committed);
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
static int fake_migrate(struct store_db *db, int *version, bool *fresh, char *errbuf,
			size_t errlen)
{
	int latest = store_migration_count
			     ? store_migrations[store_migration_count - 1].version
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
	tx->work = state_copy(db->committed);
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
	state_free(old);
	pthread_mutex_unlock(&db->write_lock);
	free(tx);
	return rc;
}

/* Users. */

static int fake_user_add(struct store_tx *tx, const struct store_user *u)
{
	struct fstate *s = tx->work;
	struct fuser *r;

	if (user_find(s, u->uuid) != NULL || user_by_name(s, u->username) != NULL)
		return TOKEND_EEXISTS;
	r = row_push(s, T_USERS);
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
	const struct fstate *s = db_read(db);
	const struct fuser *r = by == STORE_BY_NAME ? user_by_name(s, key) : user_find(s, key);
	int rc = TOKEND_ENOTFOUND;

	if (r != NULL) {
		*out = r->u;
		if (by != STORE_BY_NAME)
			out->password[0] = '\0';
		rc = 0;
	}
	db_unread(db);
	return rc;
}

static int fake_user_uuid(struct store_tx *tx, const char *username, char out[UUID_STR_LEN])
{
	const struct fuser *r = user_by_name(tx->work, username);

	if (r == NULL)
		return TOKEND_ENOTFOUND;
	memcpy(out, r->u.uuid, UUID_STR_LEN);
	return 0;
}

static int fake_user_set_password(struct store_tx *tx, const char *uuid, const char *hash)
{
	struct fuser *r = user_find(tx->work, uuid);

	if (r == NULL)
		return TOKEND_ENOTFOUND;
	PUT(r->u.password, hash);
	return 0;
}

/* A user going inactive: its live sessions stop being live (the log says so). */
static int fake_user_set_active(struct store_tx *tx, const char *uuid, bool active)
{
	struct fstate *s = tx->work;
	struct fuser *r = user_find(s, uuid);
	int rc = 0;

	if (r == NULL)
		return TOKEND_ENOTFOUND;
	if (r->u.is_active && !active) {
		for (size_t i = 0; rc == 0 && i < NROWS(s, T_SESSIONS); i++) {
			const struct fsession *se = ROW(s, T_SESSIONS, struct fsession, i);
			if (!se->revoked && eq(se->user, uuid))
				rc = ends_log(s, se->id, util_now());
		}
	}
	r->u.is_active = active;
	return rc;
}

static int fake_user_touch_login(struct store_tx *tx, const char *uuid, int64_t now)
{
	struct fuser *r = user_find(tx->work, uuid);

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

	if (user_find(s, uuid) == NULL)
		return TOKEND_ENOTFOUND;
	for (i = 0; i < NROWS(s, T_MEMBERS);)
		if (eq(ROW(s, T_MEMBERS, struct fmember, i)->user, uuid))
			row_del(s, T_MEMBERS, i);
		else
			i++;
	for (i = 0; rc == 0 && i < NROWS(s, T_SESSIONS);)
		if (eq(ROW(s, T_SESSIONS, struct fsession, i)->user, uuid))
			rc = session_del_row(s, i, util_now());
		else
			i++;
	for (i = 0; rc == 0 && i < NROWS(s, T_REFRESH);)
		if (eq(ROW(s, T_REFRESH, struct frefresh, i)->r.user_uuid, uuid))
			rc = refresh_del_row(s, i);
		else
			i++;
	for (i = 0; rc == 0 && i < NROWS(s, T_API);)
		if (eq(ROW(s, T_API, struct store_api_token, i)->user_uuid, uuid))
			rc = api_del_row(s, i);
		else
			i++;
	for (i = 0; i < NROWS(s, T_USERS); i++)
		if (eq(ROW(s, T_USERS, struct fuser, i)->u.uuid, uuid))
			break;
	if (rc == 0)
		row_del(s, T_USERS, i);
	return rc;
}

static int fake_user_count(struct store_db *db, long *count)
{
	*count = (long)NROWS(db_read(db), T_USERS);
	db_unread(db);
	return 0;
}

static int by_username(const void *a, const void *b)
{
	return strcmp(((const struct fuser *)a)->u.username, ((const struct fuser *)b)->u.username);
}

/* Copies table tab of the last commit, sorted by cmp: callbacks run unlocked. */
static void *snapshot(struct store_db *db, int tab, int (*cmp)(const void *, const void *),
		      size_t *n)
{
	const struct fstate *s = db_read(db);
	const struct vec *a = &s->t[tab];
	void *v = malloc(a->n ? a->n * a->size : 1);

	*n = 0;
	if (v != NULL && a->n > 0)
		memcpy(v, a->v, a->n * a->size);
	if (v != NULL)
		*n = a->n;
	db_unread(db);
	if (v != NULL && cmp != NULL)
		qsort(v, *n, a->size, cmp);
	return v;
}

static int fake_user_list(struct store_db *db, int (*fn)(const struct store_user *u, void *arg),
			  void *arg)
{
	size_t n;
	struct fuser *v = snapshot(db, T_USERS, by_username, &n);

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
		if (eq(r->uuid, t->uuid) || eq(r->name, t->name))
			return TOKEND_EEXISTS;
	}
	r = row_push(s, T_TEAMS);
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
		if (eq(ROW(s, T_MEMBERS, struct fmember, i)->team, r->uuid))
			out->members++;
}

static int fake_team_get(struct store_db *db, struct store_tx *tx, const char *ref,
			 struct store_team *out)
{
	const struct fstate *s = tx ? tx->work : db_read(db);
	const struct fteam *r = team_find(s, ref);
	int rc = 0;

	for (size_t i = 0; r == NULL && i < NROWS(s, T_TEAMS); i++)
		if (eq(ROW(s, T_TEAMS, struct fteam, i)->name, ref))
			r = ROW(s, T_TEAMS, struct fteam, i);
	if (r != NULL)
		team_out(s, r, out);
	else
		rc = TOKEND_ENOTFOUND;
	if (tx == NULL)
		db_unread(db);
	return rc;
}

static int fake_team_list(struct store_db *db, int (*fn)(const struct store_team *t, void *arg),
			  void *arg)
{
	const struct fstate *s = db_read(db);
	size_t n = NROWS(s, T_TEAMS);
	struct store_team *v = malloc(n ? n * sizeof(*v) : 1);

	if (v != NULL)
		for (size_t i = 0; i < n; i++)
			team_out(s, ROW(s, T_TEAMS, struct fteam, i), &v[i]);
	db_unread(db);
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

	if (!eq(role, "member") && !eq(role, "admin"))
		return TOKEND_EDB; /* the CHECK constraint */
	if (team_find(s, team_uuid) == NULL || user_find(s, user_uuid) == NULL)
		return TOKEND_ENOTFOUND; /* the foreign keys */
	m = member_find(s, team_uuid, user_uuid);
	if (m == NULL) {
		m = row_push(s, T_MEMBERS);
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
		if (eq(m->team, team_uuid) && eq(m->user, user_uuid)) {
			row_del(s, T_MEMBERS, i);
			return 0;
		}
	}
	return TOKEND_ENOTFOUND;
}

static int fake_member_is(struct store_db *db, const char *team_uuid, const char *user_uuid,
			  bool *member)
{
	*member = member_find(db_read(db), team_uuid, user_uuid) != NULL;
	db_unread(db);
	return 0;
}

/* Sessions. */

static int fake_session_add(struct store_tx *tx, const char *sid, const char *user_uuid,
			    int64_t created_at)
{
	struct fstate *s = tx->work;
	struct fsession *se;

	if (session_find(s, sid) != NULL)
		return TOKEND_EEXISTS;
	if (user_find(s, user_uuid) == NULL)
		return TOKEND_ENOTFOUND;
	se = row_push(s, T_SESSIONS);
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
	const struct fstate *s = db_read(db);
	const struct fuser *u = user_find(s, user_uuid);
	const struct fsession *se = session_find(s, sid);

	if (u == NULL)
		*state = STORE_SESSION_NO_USER;
	else if (!u->u.is_active)
		*state = STORE_SESSION_INACTIVE;
	else if (se != NULL && eq(se->user, user_uuid) && !se->revoked)
		*state = STORE_SESSION_LIVE;
	else
		*state = STORE_SESSION_ENDED;
	db_unread(db);
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
			hit = eq(r->r.family, sid);
		} else {
			const struct fsession *se = session_find(s, r->r.family);
			hit = !r->revoked && se != NULL && eq(se->user, user_uuid);
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
		if (se->revoked || !eq(se->user, user_uuid) || (sid != NULL && !eq(se->id, sid)))
			continue;
		se->revoked = true;
		se->revoked_at = now;
		n++;
		rc = ends_log(s, se->id, now);
	}
	if (ended != NULL)
		*ended = rc == 0 ? n : 0;
	return rc;
}

static int fake_session_ends_since(struct store_db *db, int64_t after, store_session_end_fn fn,
				   void *arg)
{
	size_t n;
	struct fend *v = snapshot(db, T_ENDS, NULL, &n);

	if (v == NULL)
		return TOKEND_ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (v[i].seq > after && fn(v[i].seq, v[i].sid, v[i].ended_at, arg) != 0)
			break;
	free(v);
	return 0;
}

/* Refresh tokens. */

static int fake_refresh_add(struct store_tx *tx, const struct store_refresh *r)
{
	struct fstate *s = tx->work;
	struct frefresh *row;

	if (refresh_find(s, r->jti) != NULL)
		return TOKEND_EEXISTS;
	if (user_find(s, r->user_uuid) == NULL)
		return TOKEND_ENOTFOUND;
	row = row_push(s, T_REFRESH);
	if (row == NULL)
		return TOKEND_ENOMEM;
	PUT(row->r.jti, r->jti);
	PUT(row->r.family, r->family);
	PUT(row->r.user_uuid, r->user_uuid);
	PUT(row->r.kid, r->kid);
	PUT(row->r.access_jti, r->access_jti);
	row->r.issued_at = r->issued_at;
	row->r.expires_at = r->expires_at;
	return 0;
}

/* S_REFRESH_GET: a family without a live session row counts as revoked. */
static int fake_refresh_state(struct store_tx *tx, const char *jti,
			      struct store_refresh_state *out)
{
	const struct fstate *s = tx->work;
	const struct frefresh *r = refresh_find(s, jti);
	const struct fuser *u = r ? user_find(s, r->r.user_uuid) : NULL;
	const struct fsession *se;

	memset(out, 0, sizeof(*out));
	if (r == NULL || u == NULL)
		return 0;
	se = session_find(s, r->r.family);
	out->found = true;
	PUT(out->family, r->r.family);
	PUT(out->owner, r->r.user_uuid);
	PUT(out->replaced_by, r->replaced_by);
	out->used = r->used;
	out->used_at = r->used ? r->used_at : 0;
	out->revoked = r->revoked || se == NULL || se->revoked;
	out->active = u->u.is_active;
	out->session_created_at = se ? se->created_at : r->r.issued_at;
	return 0;
}

/* S_REFRESH_ROW: unused and unrevoked (the session is not asked). */
static int fake_refresh_row(struct store_tx *tx, const char *jti, struct store_refresh *out)
{
	const struct fstate *s = tx->work;
	const struct frefresh *r = refresh_find(s, jti);
	const struct fsession *se;

	if (r == NULL || r->used || r->revoked)
		return TOKEND_ENOTFOUND;
	se = session_find(s, r->r.family);
	*out = r->r;
	out->session_created_at = se ? se->created_at : r->r.issued_at;
	return 0;
}

static int fake_refresh_use(struct store_tx *tx, const char *jti, int64_t now,
			    const char *next_jti)
{
	struct frefresh *r = refresh_find(tx->work, jti);

	if (r == NULL || r->used)
		return TOKEND_ENOTFOUND;
	r->used = true;
	r->used_at = now;
	PUT(r->replaced_by, next_jti);
	return 0;
}

static int fake_refresh_live(struct store_db *db, const char *jti, const char *user_uuid,
			     bool *live)
{
	const struct fstate *s = db_read(db);
	const struct frefresh *r = refresh_find(s, jti);
	const struct fsession *se = r ? session_find(s, r->r.family) : NULL;
	const struct fuser *u = r ? user_find(s, r->r.user_uuid) : NULL;

	*live = r != NULL && eq(r->r.user_uuid, user_uuid) && !r->used && !r->revoked &&
		se != NULL && !se->revoked && u != NULL && u->u.is_active;
	db_unread(db);
	return 0;
}

/* API tokens. */

static int fake_api_count(struct store_tx *tx, const char *user_uuid, const char *team_uuid,
			  int64_t now, long *count)
{
	const struct fstate *s = tx->work;

	*count = 0;
	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (eq(t->user_uuid, user_uuid) && eq(t->team_uuid, team_uuid) &&
		    t->expires_at > now)
			(*count)++;
	}
	return 0;
}

static int fake_api_add(struct store_tx *tx, const struct store_api_token *t)
{
	struct fstate *s = tx->work;
	struct store_api_token *row;

	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		row = ROW(s, T_API, struct store_api_token, i);
		if (eq(row->jti, t->jti) || memcmp(row->digest, t->digest, sizeof(t->digest)) == 0)
			return TOKEND_EEXISTS;
	}
	if (user_find(s, t->user_uuid) == NULL || team_find(s, t->team_uuid) == NULL)
		return TOKEND_ENOTFOUND;
	row = row_push(s, T_API);
	if (row == NULL)
		return TOKEND_ENOMEM;
	PUT(row->jti, t->jti);
	memcpy(row->digest, t->digest, sizeof(row->digest));
	PUT(row->user_uuid, t->user_uuid);
	PUT(row->team_uuid, t->team_uuid);
	PUT(row->kid, t->kid);
	PUT(row->name, t->name);
	row->issued_at = t->issued_at;
	row->updated_at = t->updated_at;
	row->expires_at = t->expires_at;
	return version_bump(s, t->user_uuid, t->team_uuid);
}

static int fake_api_version(struct store_db *db, const char *team_uuid, const char *user_uuid,
			    bool *member, int64_t *version)
{
	const struct fstate *s = db_read(db);

	*member = member_find(s, team_uuid, user_uuid) != NULL;
	*version = 0;
	for (size_t i = 0; *member && i < NROWS(s, T_VERSIONS); i++) {
		const struct fversion *v = ROW(s, T_VERSIONS, struct fversion, i);
		if (eq(v->user, user_uuid) && eq(v->team, team_uuid))
			*version = v->version;
	}
	db_unread(db);
	return 0;
}

static int fake_api_list(struct store_db *db, const char *user_uuid, const char *team_uuid,
			 int64_t now, int (*fn)(const struct store_api_token *t, void *arg),
			 void *arg)
{
	size_t n, k = 0;
	struct store_api_token *v = snapshot(db, T_API, NULL, &n);

	if (v == NULL)
		return TOKEND_ENOMEM;
	/* The matching rows (compacted in place, k <= i), then newest first:
	 * reversed to rowid DESC, then a stable sort by issued_at DESC. */
	for (size_t i = 0; i < n; i++)
		if (eq(v[i].user_uuid, user_uuid) && eq(v[i].team_uuid, team_uuid) &&
		    v[i].expires_at > now)
			v[k++] = v[i];
	for (size_t i = 0; i < k / 2; i++) {
		struct store_api_token t = v[i];
		v[i] = v[k - 1 - i];
		v[k - 1 - i] = t;
	}
	for (size_t i = 1; i < k; i++)
		for (size_t j = i; j > 0 && v[j - 1].issued_at < v[j].issued_at; j--) {
			struct store_api_token t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	for (size_t i = 0; i < k; i++) {
		memset(v[i].digest, 0, sizeof(v[i].digest)); /* S_API_LIST reads none */
		if (fn(&v[i], arg) != 0)
			break;
	}
	free(v);
	return 0;
}

static int fake_api_by_digest(struct store_db *db, const unsigned char digest[32],
			      char jti[UUID_STR_LEN])
{
	const struct fstate *s = db_read(db);
	int rc = TOKEND_ENOTFOUND;

	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (memcmp(t->digest, digest, sizeof(t->digest)) == 0) {
			memcpy(jti, t->jti, UUID_STR_LEN);
			rc = 0;
			break;
		}
	}
	db_unread(db);
	return rc;
}

static int fake_api_delete(struct store_tx *tx, const char *jti, const char *user_uuid,
			   const char *team_uuid, int64_t now, long *deleted)
{
	struct fstate *s = tx->work;

	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (eq(t->jti, jti) && eq(t->user_uuid, user_uuid) &&
		    eq(t->team_uuid, team_uuid) && t->expires_at > now) {
			(*deleted)++;
			return api_del_row(s, i);
		}
	}
	return 0;
}

static int fake_api_delete_all(struct store_tx *tx, const char *user_uuid, const char *team_uuid)
{
	struct fstate *s = tx->work;
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < NROWS(s, T_API);) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (eq(t->user_uuid, user_uuid) && (team_uuid == NULL || eq(t->team_uuid, team_uuid)))
			rc = api_del_row(s, i);
		else
			i++;
	}
	return rc;
}

static int fake_api_live(struct store_db *db, const char *jti, const char *user_uuid,
			 const char *team_uuid, bool *live)
{
	const struct fstate *s = db_read(db);
	const struct fuser *u = user_find(s, user_uuid);

	*live = false;
	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (eq(t->jti, jti) && eq(t->user_uuid, user_uuid) && eq(t->team_uuid, team_uuid))
			*live = u != NULL && u->u.is_active &&
				member_find(s, team_uuid, user_uuid) != NULL;
	}
	db_unread(db);
	return 0;
}

/* Housekeeping. */

/* limit < 0 is no limit, as SQLite's LIMIT -1. */
static int fake_purge(struct store_tx *tx, enum store_purge_table table, int64_t before,
		      long limit, long *deleted)
{
	struct fstate *s = tx->work;
	int tab = table == STORE_PURGE_REFRESH ? T_REFRESH
		  : table == STORE_PURGE_API   ? T_API
					       : T_ENDS;
	long n = 0;
	int rc = 0;

	*deleted = 0;
	if ((int)table < 0 || table >= STORE_PURGE_TABLES)
		return TOKEND_EINVAL;
	for (size_t i = 0; rc == 0 && i < NROWS(s, tab) && (limit < 0 || n < limit);) {
		int64_t due = tab == T_REFRESH ? ROW(s, T_REFRESH, struct frefresh, i)->r.expires_at
			      : tab == T_API   ? ROW(s, T_API, struct store_api_token, i)->expires_at
					       : ROW(s, T_ENDS, struct fend, i)->ended_at;
		if (due > before) {
			i++;
			continue;
		}
		n++;
		if (tab == T_REFRESH)
			rc = refresh_del_row(s, i);
		else if (tab == T_API)
			rc = api_del_row(s, i);
		else
			row_del(s, T_ENDS, i);
	}
	if (rc == 0)
		*deleted = n;
	return rc;
}

static int fake_key_in_use(struct store_db *db, const char *kid, int64_t now,
			   long access_lifetime, bool *in_use)
{
	const struct fstate *s = db_read(db);

	*in_use = false;
	for (size_t i = 0; !*in_use && i < NROWS(s, T_REFRESH); i++) {
		const struct frefresh *r = ROW(s, T_REFRESH, struct frefresh, i);
		*in_use = eq(r->r.kid, kid) &&
			  ((!r->used && !r->revoked && r->r.expires_at > now) ||
			   r->r.issued_at + access_lifetime > now);
	}
	for (size_t i = 0; !*in_use && i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		*in_use = eq(t->kid, kid) && t->expires_at > now;
	}
	db_unread(db);
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
