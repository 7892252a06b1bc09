/* SPDX-License-Identifier: MIT */
/*
 * This module implements the token ops of the fake backend (fake.h):
 * refresh tokens (their state for a rotation, spending one, liveness), API
 * tokens (the cap's count, add, version, list, delete, liveness) and
 * housekeeping (purge, key in use), each meaning what the SQLite statement
 * of the same name means (src/store/sqlite/tokens.c's stmt_sql).
 */
#include <stdlib.h>
#include <string.h>

#include "store/fake/fake_internal.h"
#include "tokend/err.h"

/* Refresh tokens. */

int fake_refresh_add(struct store_tx *tx, const struct store_refresh *r)
{
	struct fstate *s = tx->work;
	struct frefresh *row;

	if (fake_refresh_find(s, r->jti) != NULL)
		return TOKEND_EEXISTS;
	if (fake_user_find(s, r->user_uuid) == NULL)
		return TOKEND_ENOTFOUND;
	row = fake_row_push(s, T_REFRESH);
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
int fake_refresh_state(struct store_tx *tx, const char *jti, struct store_refresh_state *out)
{
	const struct fstate *s = tx->work;
	const struct frefresh *r = fake_refresh_find(s, jti);
	const struct fuser *u = r ? fake_user_find(s, r->r.user_uuid) : NULL;
	const struct fsession *se;

	memset(out, 0, sizeof(*out));
	if (r == NULL || u == NULL)
		return 0;
	se = fake_session_find(s, r->r.family);
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
int fake_refresh_row(struct store_tx *tx, const char *jti, struct store_refresh *out)
{
	const struct fstate *s = tx->work;
	const struct frefresh *r = fake_refresh_find(s, jti);
	const struct fsession *se;

	if (r == NULL || r->used || r->revoked)
		return TOKEND_ENOTFOUND;
	se = fake_session_find(s, r->r.family);
	*out = r->r;
	out->session_created_at = se ? se->created_at : r->r.issued_at;
	return 0;
}

int fake_refresh_use(struct store_tx *tx, const char *jti, int64_t now, const char *next_jti)
{
	struct frefresh *r = fake_refresh_find(tx->work, jti);

	if (r == NULL || r->used)
		return TOKEND_ENOTFOUND;
	r->used = true;
	r->used_at = now;
	PUT(r->replaced_by, next_jti);
	return 0;
}

int fake_refresh_live(struct store_db *db, const char *jti, const char *user_uuid, bool *live)
{
	const struct fstate *s = fake_read(db);
	const struct frefresh *r = fake_refresh_find(s, jti);
	const struct fsession *se = r ? fake_session_find(s, r->r.family) : NULL;
	const struct fuser *u = r ? fake_user_find(s, r->r.user_uuid) : NULL;

	*live = r != NULL && fake_eq(r->r.user_uuid, user_uuid) && !r->used && !r->revoked &&
		se != NULL && !se->revoked && u != NULL && u->u.is_active;
	fake_unread(db);
	return 0;
}

/* API tokens. */

int fake_api_count(struct store_tx *tx, const char *user_uuid, const char *team_uuid, int64_t now,
		   long *count)
{
	const struct fstate *s = tx->work;

	*count = 0;
	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (fake_eq(t->user_uuid, user_uuid) && fake_eq(t->team_uuid, team_uuid) &&
		    t->expires_at > now)
			(*count)++;
	}
	return 0;
}

int fake_api_add(struct store_tx *tx, const struct store_api_token *t)
{
	struct fstate *s = tx->work;
	struct store_api_token *row;

	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		row = ROW(s, T_API, struct store_api_token, i);
		if (fake_eq(row->jti, t->jti) ||
		    memcmp(row->digest, t->digest, sizeof(t->digest)) == 0)
			return TOKEND_EEXISTS;
	}
	if (fake_user_find(s, t->user_uuid) == NULL || fake_team_find(s, t->team_uuid) == NULL)
		return TOKEND_ENOTFOUND;
	row = fake_row_push(s, T_API);
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
	return fake_version_bump(s, t->user_uuid, t->team_uuid);
}

int fake_api_version(struct store_db *db, const char *team_uuid, const char *user_uuid,
		     bool *member, int64_t *version)
{
	const struct fstate *s = fake_read(db);

	*member = fake_member_find(s, team_uuid, user_uuid) != NULL;
	*version = 0;
	for (size_t i = 0; *member && i < NROWS(s, T_VERSIONS); i++) {
		const struct fversion *v = ROW(s, T_VERSIONS, struct fversion, i);
		if (fake_eq(v->user, user_uuid) && fake_eq(v->team, team_uuid))
			*version = v->version;
	}
	fake_unread(db);
	return 0;
}

int fake_api_list(struct store_db *db, const char *user_uuid, const char *team_uuid, int64_t now,
		  int (*fn)(const struct store_api_token *t, void *arg), void *arg)
{
	size_t n, k = 0;
	struct store_api_token *v = fake_snapshot(db, T_API, NULL, &n);

	if (v == NULL)
		return TOKEND_ENOMEM;
	/* The matching rows (compacted in place, k <= i), then newest first:
	 * reversed to rowid DESC, then a stable sort by issued_at DESC. */
	for (size_t i = 0; i < n; i++)
		if (fake_eq(v[i].user_uuid, user_uuid) && fake_eq(v[i].team_uuid, team_uuid) &&
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

int fake_api_by_digest(struct store_db *db, const unsigned char digest[32], char jti[UUID_STR_LEN])
{
	const struct fstate *s = fake_read(db);
	int rc = TOKEND_ENOTFOUND;

	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (memcmp(t->digest, digest, sizeof(t->digest)) == 0) {
			memcpy(jti, t->jti, UUID_STR_LEN);
			rc = 0;
			break;
		}
	}
	fake_unread(db);
	return rc;
}

int fake_api_delete(struct store_tx *tx, const char *jti, const char *user_uuid,
		    const char *team_uuid, int64_t now, long *deleted)
{
	struct fstate *s = tx->work;

	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (fake_eq(t->jti, jti) && fake_eq(t->user_uuid, user_uuid) &&
		    fake_eq(t->team_uuid, team_uuid) && t->expires_at > now) {
			(*deleted)++;
			return fake_api_del_row(s, i);
		}
	}
	return 0;
}

int fake_api_delete_all(struct store_tx *tx, const char *user_uuid, const char *team_uuid)
{
	struct fstate *s = tx->work;
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < NROWS(s, T_API);) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (fake_eq(t->user_uuid, user_uuid) &&
		    (team_uuid == NULL || fake_eq(t->team_uuid, team_uuid)))
			rc = fake_api_del_row(s, i);
		else
			i++;
	}
	return rc;
}

int fake_api_live(struct store_db *db, const char *jti, const char *user_uuid,
		  const char *team_uuid, bool *live)
{
	const struct fstate *s = fake_read(db);
	const struct fuser *u = fake_user_find(s, user_uuid);

	*live = false;
	for (size_t i = 0; i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		if (fake_eq(t->jti, jti) && fake_eq(t->user_uuid, user_uuid) &&
		    fake_eq(t->team_uuid, team_uuid))
			*live = u != NULL && u->u.is_active &&
				fake_member_find(s, team_uuid, user_uuid) != NULL;
	}
	fake_unread(db);
	return 0;
}

/* Housekeeping. */

/* limit < 0 is no limit, as SQLite's LIMIT -1. */
int fake_purge(struct store_tx *tx, enum store_purge_table table, int64_t before, long limit,
	       long *deleted)
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
			      : tab == T_API ? ROW(s, T_API, struct store_api_token, i)->expires_at
					     : ROW(s, T_ENDS, struct fend, i)->ended_at;
		if (due > before) {
			i++;
			continue;
		}
		n++;
		if (tab == T_REFRESH)
			rc = fake_refresh_del_row(s, i);
		else if (tab == T_API)
			rc = fake_api_del_row(s, i);
		else
			fake_row_del(s, T_ENDS, i);
	}
	if (rc == 0)
		*deleted = n;
	return rc;
}

int fake_key_in_use(struct store_db *db, const char *kid, int64_t now, long access_lifetime,
		    bool *in_use)
{
	const struct fstate *s = fake_read(db);

	*in_use = false;
	for (size_t i = 0; !*in_use && i < NROWS(s, T_REFRESH); i++) {
		const struct frefresh *r = ROW(s, T_REFRESH, struct frefresh, i);
		*in_use = fake_eq(r->r.kid, kid) &&
			  ((!r->used && !r->revoked && r->r.expires_at > now) ||
			   r->r.issued_at + access_lifetime > now);
	}
	for (size_t i = 0; !*in_use && i < NROWS(s, T_API); i++) {
		const struct store_api_token *t = ROW(s, T_API, struct store_api_token, i);
		*in_use = fake_eq(t->kid, kid) && t->expires_at > now;
	}
	fake_unread(db);
	return 0;
}
