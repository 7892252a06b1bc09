/* SPDX-License-Identifier: MIT */
/*
 * This module implements the fake backend's tables (fake_internal.h): rows
 * kept in insertion (rowid) order in growable arrays, the deep copy a write
 * transaction works on, lookups by key, and the deletes and appends that
 * stand for sql/'s triggers and cascades: the version bump of sql/003, the
 * session gone with its last refresh row of sql/004, the session_ends log.
 */
#include <stdlib.h>
#include <string.h>

#include "store/fake/fake_internal.h"
#include "tokend/err.h"
#include "tokend/util.h"

static const size_t row_size[T_N] = {
	[T_USERS] = sizeof(struct fuser),       [T_TEAMS] = sizeof(struct fteam),
	[T_MEMBERS] = sizeof(struct fmember),   [T_SESSIONS] = sizeof(struct fsession),
	[T_REFRESH] = sizeof(struct frefresh),  [T_API] = sizeof(struct store_api_token),
	[T_VERSIONS] = sizeof(struct fversion), [T_ENDS] = sizeof(struct fend),
};

/* A zeroed new row at the end of table tab, or NULL (out of memory). */
void *fake_row_push(struct fstate *s, int tab)
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
void fake_row_del(struct fstate *s, int tab, size_t i)
{
	struct vec *a = &s->t[tab];

	memmove(a->v + i * a->size, a->v + (i + 1) * a->size, (a->n - i - 1) * a->size);
	a->n--;
}

void fake_state_free(struct fstate *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < T_N; i++)
		free(s->t[i].v);
	free(s);
}

struct fstate *fake_state_new(void)
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
struct fstate *fake_state_copy(const struct fstate *src)
{
	struct fstate *s = fake_state_new();

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
			fake_state_free(s);
			return NULL;
		}
		memcpy(s->t[i].v, a->v, a->n * a->size);
		s->t[i].n = s->t[i].cap = a->n;
	}
	return s;
}

/* Read access to the last commit: fake_read() ... fake_unread(). */
const struct fstate *fake_read(struct store_db *db)
{
	pthread_mutex_lock(&db->state_lock);
	return db->committed;
}

void fake_unread(struct store_db *db)
{
	pthread_mutex_unlock(&db->state_lock);
}

struct fuser *fake_user_find(const struct fstate *s, const char *uuid)
{
	for (size_t i = 0; i < NROWS(s, T_USERS); i++)
		if (fake_eq(ROW(s, T_USERS, struct fuser, i)->u.uuid, uuid))
			return ROW(s, T_USERS, struct fuser, i);
	return NULL;
}

struct fuser *fake_user_by_name(const struct fstate *s, const char *name)
{
	for (size_t i = 0; i < NROWS(s, T_USERS); i++)
		if (fake_eq(ROW(s, T_USERS, struct fuser, i)->u.username, name))
			return ROW(s, T_USERS, struct fuser, i);
	return NULL;
}

struct fteam *fake_team_find(const struct fstate *s, const char *uuid)
{
	for (size_t i = 0; i < NROWS(s, T_TEAMS); i++)
		if (fake_eq(ROW(s, T_TEAMS, struct fteam, i)->uuid, uuid))
			return ROW(s, T_TEAMS, struct fteam, i);
	return NULL;
}

struct fmember *fake_member_find(const struct fstate *s, const char *team, const char *user)
{
	for (size_t i = 0; i < NROWS(s, T_MEMBERS); i++) {
		struct fmember *m = ROW(s, T_MEMBERS, struct fmember, i);
		if (fake_eq(m->team, team) && fake_eq(m->user, user))
			return m;
	}
	return NULL;
}

struct fsession *fake_session_find(const struct fstate *s, const char *id)
{
	for (size_t i = 0; i < NROWS(s, T_SESSIONS); i++)
		if (fake_eq(ROW(s, T_SESSIONS, struct fsession, i)->id, id))
			return ROW(s, T_SESSIONS, struct fsession, i);
	return NULL;
}

struct frefresh *fake_refresh_find(const struct fstate *s, const char *jti)
{
	for (size_t i = 0; i < NROWS(s, T_REFRESH); i++)
		if (fake_eq(ROW(s, T_REFRESH, struct frefresh, i)->r.jti, jti))
			return ROW(s, T_REFRESH, struct frefresh, i);
	return NULL;
}

/* Appends a session_ends row. */
int fake_ends_log(struct fstate *s, const char *sid, int64_t at)
{
	struct fend *e = fake_row_push(s, T_ENDS);

	if (e == NULL)
		return TOKEND_ENOMEM;
	e->seq = s->next_seq++;
	PUT(e->sid, sid);
	e->ended_at = at;
	return 0;
}

/* The version trigger of sql/003: (user, team) goes to 1 or one up. */
int fake_version_bump(struct fstate *s, const char *user, const char *team)
{
	struct fversion *v;

	for (size_t i = 0; i < NROWS(s, T_VERSIONS); i++) {
		v = ROW(s, T_VERSIONS, struct fversion, i);
		if (fake_eq(v->user, user) && fake_eq(v->team, team)) {
			v->version++;
			return 0;
		}
	}
	v = fake_row_push(s, T_VERSIONS);
	if (v == NULL)
		return TOKEND_ENOMEM;
	PUT(v->user, user);
	PUT(v->team, team);
	v->version = 1;
	return 0;
}

/* Deletes API token row i, bumping its pair's version (sql/003). */
int fake_api_del_row(struct fstate *s, size_t i)
{
	struct store_api_token t = *ROW(s, T_API, struct store_api_token, i);

	fake_row_del(s, T_API, i);
	return fake_version_bump(s, t.user_uuid, t.team_uuid);
}

/* Deletes session row i; a live one is logged as ended at `at`. */
int fake_session_del_row(struct fstate *s, size_t i, int64_t at)
{
	struct fsession se = *ROW(s, T_SESSIONS, struct fsession, i);

	fake_row_del(s, T_SESSIONS, i);
	return se.revoked ? 0 : fake_ends_log(s, se.id, at);
}

/* Deletes refresh row i; the session goes with its family's last row (sql/004). */
int fake_refresh_del_row(struct fstate *s, size_t i)
{
	char family[UUID_STR_LEN];

	PUT(family, ROW(s, T_REFRESH, struct frefresh, i)->r.family);
	fake_row_del(s, T_REFRESH, i);
	for (size_t j = 0; j < NROWS(s, T_REFRESH); j++)
		if (fake_eq(ROW(s, T_REFRESH, struct frefresh, j)->r.family, family))
			return 0;
	for (size_t j = 0; j < NROWS(s, T_SESSIONS); j++)
		if (fake_eq(ROW(s, T_SESSIONS, struct fsession, j)->id, family))
			return fake_session_del_row(s, j, util_now());
	return 0;
}

/* Copies table tab of the last commit, sorted by cmp: callbacks run unlocked. */
void *fake_snapshot(struct store_db *db, int tab, int (*cmp)(const void *, const void *), size_t *n)
{
	const struct fstate *s = fake_read(db);
	const struct vec *a = &s->t[tab];
	void *v = malloc(a->n ? a->n * a->size : 1);

	*n = 0;
	if (v != NULL && a->n > 0)
		memcpy(v, a->v, a->n * a->size);
	if (v != NULL)
		*n = a->n;
	fake_unread(db);
	if (v != NULL && cmp != NULL)
		qsort(v, *n, a->size, cmp);
	return v;
}
